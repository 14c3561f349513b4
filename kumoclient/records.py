"""Frozen records shared by every layer: replies, dispositions, messages and log records (the
typed configuration is in configs.py)."""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field
from typing import Any


class RecordType(enum.Enum):
    """The `type` of a log record (KumoMTA's names): what happened to a message."""

    RECEPTION = "Reception"
    DELIVERY = "Delivery"
    TRANSIENT_FAILURE = "TransientFailure"
    BOUNCE = "Bounce"
    EXPIRATION = "Expiration"
    ADMIN_BOUNCE = "AdminBounce"
    # an inbound RFC 3464 report to a `log_oob` listener domain: one per failed recipient
    OOB = "OOB"
    # an inbound RFC 5965 complaint to a `log_arf` listener domain, instead of its Reception
    FEEDBACK = "Feedback"


# The record types that end a message's life: it leaves the spool after one of them. Not OOB
# nor Feedback: they tell of an inbound report message, under that message's own id, and that
# message may still be relayed (`LogThenRelay`) and get its own Delivery or Bounce later.
FINAL_TYPES: frozenset[RecordType] = frozenset(
    {RecordType.DELIVERY, RecordType.BOUNCE, RecordType.EXPIRATION, RecordType.ADMIN_BOUNCE}
)

# What a reply code means for a message (`core.classify`): one of Delivery, TransientFailure
# or Bounce. The same enum as the record types (one owner of the names), kept under this name
# for the library API and `RewriteOutcome.disposition`.
Disposition = RecordType


@dataclass(frozen=True, slots=True)
class EnhancedCode:
    """An RFC 3463 enhanced status code `class.subject.detail`."""

    klass: int
    subject: int
    detail: int

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply, remembering the command line it answered (None when synthesized).

    `content` keeps line breaks (`\\n` between the lines of a multi-line reply); the one-line
    forms for the rewrite hook and for log records are made by `core.reply`.
    """

    code: int
    enhanced_code: EnhancedCode | None
    content: str
    command: str | None = None


@dataclass(frozen=True, slots=True)
class QueueName:
    """The parts of `campaign:tenant@domain!routing_domain`."""

    domain: str
    tenant: str | None = None
    campaign: str | None = None
    routing_domain: str | None = None


@dataclass(frozen=True, slots=True)
class RewriteOutcome:
    """The result of running `smtp_client_rewrite_delivery_status` on a reply."""

    reply: Reply
    original_code: int
    rewritten: bool
    disposition: Disposition
    error: str | None = None


# --- configuration produced by the policy (kumo.make_* / kumo.start_* / kumo.define_*) ---


@dataclass(frozen=True, slots=True)
class DeliveryWindow:
    """When delivery is allowed (`msg:set_scheduling`'s `dow`, `tz`, `start`, `end`): on
    `days` (0 Monday ... 6 Sunday), from `start` up to (not including) `end`, local times of
    the IANA time zone `tz`."""

    days: frozenset[int]
    tz: str
    start: datetime.time
    end: datetime.time


@dataclass(frozen=True, slots=True)
class Schedule:
    """A message's scheduling constraints (`msg:set_scheduling`, `core.schedule` decides with
    them): its delivery window, the earliest first attempt, and its own expiry time, which
    replaces the queue's `max_age`. Times are aware datetimes (their offset is kept: the
    policy gets back what it gave)."""

    window: DeliveryWindow | None = None
    first_attempt: datetime.datetime | None = None
    expires: datetime.datetime | None = None


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    """A message in the spool: one recipient, its envelope, metadata and scheduling state.

    `meta` holds the policy's metadata, a JSON object: any JSON value under each key
    (`tenant`, `campaign`, `routing_domain`, `queue` are reserved, and strings when set); `due`
    is when the next attempt may start (Unix seconds); `schedule` the policy's constraints.
    """

    id: str
    sender: str
    recipient: str
    meta: dict[str, Any]
    created: float
    size: int
    attempts: int = 0
    due: float = 0.0
    last_response: str | None = None
    reception_protocol: str = "ESMTP"
    schedule: Schedule | None = None


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """Who a session is (KumoMTA's AuthInfo): the peer's IP address, the identities it
    authenticated as (`(identity, context)`, context one of KumoMTA's names such as
    `HttpBasicAuth`), and the groups it belongs to."""

    peer_address: str | None = None
    identities: tuple[tuple[str, str], ...] = ()
    groups: tuple[str, ...] = ()

    def as_data(self) -> dict[str, Any]:
        """The AuthInfo table a policy sees: `{peer_address, identities = {{identity,
        context}, ...}, groups}`."""
        return {
            "peer_address": self.peer_address,
            "identities": [
                {"identity": identity, "context": context} for identity, context in self.identities
            ],
            "groups": list(self.groups),
        }


@dataclass(frozen=True, slots=True)
class Arrival:
    """How a submission arrived, as its Reception records tell: the client (its HELO/EHLO
    name and address) and the session's TLS (protocol version, cipher)."""

    peer_address: tuple[str, str] | None = None
    tls: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class RemoteMta:
    """An MTA as a report names it: `dns; mx.example.com` is `mta_type` `dns`, `name`
    `mx.example.com`."""

    mta_type: str
    name: str


@dataclass(frozen=True, slots=True)
class ArfReport:
    """An RFC 5965 feedback report (a complaint), as KumoMTA logs it in `feedback_report`
    (`core.arf_report` reads it, `core.log_record` writes it).

    Dates are Unix seconds; `extensions` maps the lower-case name of every field the RFC does
    not define to its values; `original_message` is the reported message (or its header block)
    as sent, with LF line endings; `supplemental_trace` is the decoded supplemental trace
    header found in it. `original_rcpto_to` keeps KumoMTA's spelling of its JSON name.
    """

    feedback_type: str
    user_agent: str
    version: str
    arrival_date: float | None = None
    incidents: int | None = None
    original_envelope_id: str | None = None
    original_mail_from: str | None = None
    reporting_mta: RemoteMta | None = None
    source_ip: str | None = None
    authentication_results: tuple[str, ...] = ()
    original_rcpto_to: tuple[str, ...] = ()
    reported_domain: tuple[str, ...] = ()
    reported_uri: tuple[str, ...] = ()
    extensions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    original_message: bytes | None = None
    supplemental_trace: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log record (SPEC 6) as kumoclient writes it; `core.log_record` is its one codec
    (to and from the JSON object of a log line).

    `when` is the time of the event (Unix seconds; `timestamp` and `event_time` in JSON),
    `created` the message's creation time, `peer_address` `(name, addr)`, `tls`
    `(protocol version, cipher)` when the session used TLS, `feedback_report` the complaint of
    a Feedback record. `response.content` may hold line breaks; the codec writes it as one line.
    """

    type: RecordType
    id: str
    sender: str
    recipient: str
    queue: str
    when: float
    created: float
    size: int = 0
    site: str = ""
    response: Reply | None = None
    peer_address: tuple[str, str] | None = None
    num_attempts: int = 0
    egress_pool: str = "unspecified"
    egress_source: str = "unspecified"
    meta: dict[str, Any] = field(default_factory=dict)
    delivery_protocol: str = "ESMTP"
    reception_protocol: str = "ESMTP"
    nodeid: str = ""
    tls: tuple[str, str] | None = None
    feedback_report: ArfReport | None = None
