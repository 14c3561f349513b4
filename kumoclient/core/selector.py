"""Which queues an administrative operation applies to: a domain, tenant and campaign to match
against the parts of a queue name (SPEC 1); parts left out match anything."""

from __future__ import annotations

from dataclasses import dataclass

from kumoclient.records import QueueName


@dataclass(frozen=True, slots=True)
class Selector:
    """Which queues an operation applies to; None parts match anything."""

    domain: str | None = None
    tenant: str | None = None
    campaign: str | None = None

    def __post_init__(self) -> None:
        if self.domain is not None:
            object.__setattr__(self, "domain", self.domain.lower())

    def matches(self, name: QueueName) -> bool:
        """True when a queue with these parts is selected."""
        return (
            (self.domain is None or name.domain.lower() == self.domain)
            and (self.tenant is None or name.tenant == self.tenant)
            and (self.campaign is None or name.campaign == self.campaign)
        )

    def as_dict(self) -> dict[str, str | None]:
        """The selector as JSON-ready fields."""
        return {"domain": self.domain, "tenant": self.tenant, "campaign": self.campaign}
