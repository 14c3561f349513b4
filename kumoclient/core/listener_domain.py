"""Listener domains (`kumo.make_listener_domain`, the `get_listener_domain` event): who may
relay through the SMTP listener, and which inbound reports are logged, by KumoMTA's rules.

At RCPT, for a client at `peer` (KumoMTA's `check_relaying`):
- it may relay when its address is in the listener's `relay_hosts`, or in the `relay_from`
  CIDRs of the listener domain of the *sender's* domain, or when the *recipient's* domain has
  `relay_to`;
- the recipient is taken when it may relay, or when the recipient's domain logs reports
  (`log_arf` or `log_oob` other than `Ignore`); otherwise `550 5.7.1`.
After DATA, per message (its first recipient's disposition): a complaint to a domain that logs
ARF is logged (a Feedback record) and relayed only with `LogThenRelay`; else a bounce report to
a domain that logs OOB likewise (OOB records); else the message is relayed when it may be.
A transaction of which nothing is relayed nor logged as a report is refused `550 5.7.1`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kumoclient.core.listener_params import network
from kumoclient.core.networks import address_in


class ReportDisposition(enum.Enum):
    """`log_arf` / `log_oob`: what to do with an inbound report of that kind (`true` is
    `LogThenRelay`, `false` `Ignore`)."""

    IGNORE = "Ignore"  # not looked at: the message is ordinary mail
    LOG_THEN_DROP = "LogThenDrop"  # logged, then dropped (not relayed)
    LOG_THEN_RELAY = "LogThenRelay"  # logged, then relayed as ordinary mail

    @property
    def logs(self) -> bool:
        """Reports of this kind are logged."""
        return self is not ReportDisposition.IGNORE


@dataclass(frozen=True, slots=True)
class ListenerDomain:
    """`kumo.make_listener_domain{...}`; `ttl` is accepted and unused, as in KumoMTA."""

    relay_to: bool = False
    relay_from: tuple[str, ...] = ()
    log_oob: ReportDisposition = ReportDisposition.IGNORE
    log_arf: ReportDisposition = ReportDisposition.IGNORE
    ttl: float = 60.0


@dataclass(frozen=True, slots=True)
class RelayDisposition:
    """What the listener domains say of one recipient: whether the client may relay to it,
    and whether reports to it are logged."""

    relay: bool
    log_arf: ReportDisposition = ReportDisposition.IGNORE
    log_oob: ReportDisposition = ReportDisposition.IGNORE

    @property
    def takes_recipient(self) -> bool:
        """The RCPT is accepted (relaying, or a report that may come)."""
        return self.relay or self.log_arf.logs or self.log_oob.logs


RELAY = RelayDisposition(True)
NO_RELAY = RelayDisposition(False)


def check_relaying(
    peer: str,
    relay_host: bool,
    sender_domain: ListenerDomain | None,
    recipient_domain: ListenerDomain | None,
) -> RelayDisposition:
    """The disposition of one recipient (see the module's text); `relay_host`: the client is
    one of the listener's `relay_hosts`."""
    relay_from = sender_domain is not None and address_in(
        peer, [network(cidr) for cidr in sender_domain.relay_from]
    )
    relay_to = recipient_domain is not None and recipient_domain.relay_to
    relay = relay_host or relay_from or relay_to
    if recipient_domain is None:
        return RELAY if relay else NO_RELAY
    return RelayDisposition(relay, recipient_domain.log_arf, recipient_domain.log_oob)


class Report(enum.Enum):
    """The kind of inbound report a message was logged as."""

    FEEDBACK = "Feedback"  # an RFC 5965 complaint: a Feedback record instead of the Reception
    OOB = "OOB"  # an RFC 3464 bounce: OOB records after the Reception


@dataclass(frozen=True, slots=True)
class AfterData:
    """What happens to one message after DATA: relayed (spooled) or not, and the report it
    is logged as (None: an ordinary message)."""

    relay: bool
    report: Report | None = None


def after_data(disposition: RelayDisposition, is_arf: bool, is_dsn: bool) -> AfterData:
    """The fate of a message whose first recipient has `disposition`; `is_arf` / `is_dsn`:
    the content reads as a complaint / a bounce report (asked only when logged)."""
    if disposition.log_arf.logs and is_arf:
        return AfterData(disposition.log_arf is ReportDisposition.LOG_THEN_RELAY, Report.FEEDBACK)
    if disposition.log_oob.logs and is_dsn:
        return AfterData(disposition.log_oob is ReportDisposition.LOG_THEN_RELAY, Report.OOB)
    return AfterData(disposition.relay)
