"""Which queues a queue-administration operation applies to: domain, tenant, campaign.

A `Selector` matches the parts of a queue name (SPEC 1, `parse_queue_name`): `domain` against
the queue's domain, case-insensitively; `tenant` and `campaign` exactly; a part that is None
matches anything, so the empty selector matches every queue.
"""

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

    @property
    def everything(self) -> bool:
        """True when no part is given: every queue is selected."""
        return self.domain is None and self.tenant is None and self.campaign is None

    def as_dict(self) -> dict[str, str | None]:
        """The selector as JSON-ready fields."""
        return {"domain": self.domain, "tenant": self.tenant, "campaign": self.campaign}
