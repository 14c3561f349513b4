"""Frozen records shared by every layer: replies, dispositions and typed configuration."""

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


class TlsMode(enum.Enum):
    """`enable_tls` of an egress path."""

    OPPORTUNISTIC = "Opportunistic"
    OPPORTUNISTIC_INSECURE = "OpportunisticInsecure"
    REQUIRED = "Required"
    REQUIRED_INSECURE = "RequiredInsecure"
    DISABLED = "Disabled"


@dataclass(frozen=True, slots=True)
class MxHost:
    """One `mx_list` entry: a host name or an address literal, optionally with a port.

    `name` is the label used in logs (`peer_address.name`); `host` is what gets resolved or
    connected to; `is_literal` is true for `[1.2.3.4]` forms and `{name=, addr=}` entries.
    """

    name: str
    host: str
    port: int | None = None
    is_literal: bool = False


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate limit such as `100/s`: `limit` events per `period` seconds, at most `burst` at
    once (None: `limit`); `local` (KumoMTA's `local:` prefix): never shared through Redis."""

    limit: int
    period: float
    spec: str
    burst: int | None = None
    local: bool = False


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """`kumo.make_queue_config{...}` (SPEC 5.1)."""

    retry_interval: float = 20 * 60.0
    max_retry_interval: float | None = None
    max_age: float = 7 * 86400.0
    egress_pool: str | None = None
    mx_list: tuple[MxHost, ...] | None = None
    generate_dsn: bool = False


DEFAULT_PROHIBITED_HOSTS: tuple[str, ...] = ("127.0.0.0/8", "::1", "0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class EgressPathConfig:
    """`kumo.make_egress_path{...}` (SPEC 5.2). Durations are seconds."""

    connection_limit: int = 32
    max_deliveries_per_connection: int = 1024
    max_message_rate: Rate | None = None
    max_connection_rate: Rate | None = None
    enable_tls: TlsMode = TlsMode.OPPORTUNISTIC
    smtp_port: int = 25
    response_line_break: str = "\\r\\n"
    prohibited_hosts: tuple[str, ...] = DEFAULT_PROHIBITED_HOSTS
    ehlo_domain: str | None = None
    source_address: str | None = None
    connect_timeout: float = 60.0
    banner_timeout: float = 60.0
    ehlo_timeout: float = 300.0
    mail_from_timeout: float = 300.0
    rcpt_to_timeout: float = 300.0
    data_timeout: float = 300.0
    data_dot_timeout: float = 300.0
    rset_timeout: float = 5.0
    idle_timeout: float = 5.0
    starttls_timeout: float = 5.0


DEFAULT_LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "::1")


class LineEndings(enum.Enum):
    """`invalid_line_endings`: what a DATA section with a bare CR or LF gets."""

    DENY = "Deny"  # refused (`552 5.6.0`)
    ALLOW = "Allow"  # taken as it is
    FIX = "Fix"  # every line end made CRLF, then taken


@dataclass(frozen=True, slots=True)
class TraceHeaders:
    """`trace_headers`: a `Received:` header before `smtp_server_message_received`, and the
    supplemental header (base64 JSON: the recipient and `include_meta_names`) after it."""

    received_header: bool = True
    supplemental_header: bool = True
    header_name: str = "X-KumoRef"
    include_meta_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ListenerOverrides:
    """The listener keys that `peer`, `via` and `smtp_server_get_dynamic_parameters` may set
    for one connection; None leaves a key as it was (`core.listener_params` applies them)."""

    hostname: str | None = None
    relay_hosts: tuple[str, ...] | None = None
    banner: str | None = None
    tls_certificate: str | None = None
    tls_private_key: str | None = None
    tls_required_client_ca: str | None = None
    trace_headers: TraceHeaders | None = None
    client_timeout: float | None = None
    data_processing_timeout: float | None = None
    max_messages_per_connection: int | None = None
    max_recipients_per_message: int | None = None
    max_message_size: int | None = None
    invalid_line_endings: LineEndings | None = None
    line_length_hard_limit: int | None = None
    allow_smtp_auth_without_tls: bool | None = None
    meta: tuple[tuple[str, object], ...] = ()
    peer: tuple[tuple[str, ListenerOverrides], ...] = ()  # (CIDR, overrides), by peer address
    via: tuple[tuple[str, ListenerOverrides], ...] = ()  # ... by the listener's own address


@dataclass(frozen=True, slots=True)
class EsmtpListenerConfig:
    """`kumo.start_esmtp_listener{...}` (SPEC 3): the keys of every connection until `peer`,
    `via` or `smtp_server_get_dynamic_parameters` change some for one (`core.listener_params`).
    Durations are seconds, sizes bytes; `hostname` None is the machine's name."""

    listen: str = "127.0.0.1:2025"
    hostname: str | None = None
    relay_hosts: tuple[str, ...] = DEFAULT_LOOPBACK_HOSTS
    banner: str | None = None
    max_message_size: int = 20 * 1024 * 1024
    max_recipients_per_message: int = 1024
    max_messages_per_connection: int = 10_000
    client_timeout: float = 60.0
    data_processing_timeout: float = 300.0
    tls_certificate: str | None = None
    tls_private_key: str | None = None
    tls_required_client_ca: str | None = None
    trace_headers: TraceHeaders = TraceHeaders()
    invalid_line_endings: LineEndings = LineEndings.DENY
    line_length_hard_limit: int = 998  # octets of a line, CRLF not counted
    # bounds against floods (docs/reception.md, "Limits"); the last three are kumoclient's
    max_connections: int = 32768
    max_connections_per_client: int = 50
    max_session_duration: float = 1800.0
    max_data_in_memory: int = 64 * 1024 * 1024
    # kumoclient's own: SMTP AUTH offered without TLS (docs/reception.md, "SMTP AUTH")
    allow_smtp_auth_without_tls: bool = False
    meta: tuple[tuple[str, object], ...] = ()  # connection metadata set at the start
    peer: tuple[tuple[str, ListenerOverrides], ...] = ()
    via: tuple[tuple[str, ListenerOverrides], ...] = ()


# A KumoMTA KeySource: a file name (str), the data itself (bytes: `{key_data=...}`), or a
# HashiCorp Vault secret (`{vault_mount=, vault_path=, ...}`, read when it is used)
KeySource = str | bytes | tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class HttpListenerConfig:
    """`kumo.start_http_listener{...}` (SPEC 3). With `use_tls` and neither certificate nor
    key, a self-signed certificate for `hostname` is made at start."""

    listen: str = "127.0.0.1:8000"
    trusted_hosts: tuple[str, ...] = DEFAULT_LOOPBACK_HOSTS
    hostname: str | None = None
    use_tls: bool = False
    tls_certificate: KeySource | None = None
    tls_private_key: KeySource | None = field(default=None, repr=False)
    request_body_limit: int = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MinFree:
    """A spool's least free space or inodes: `percent` of the filesystem, or an `amount`
    (bytes or inodes); below it no mail is taken (KumoMTA's default: 10%)."""

    percent: int | None = None
    amount: int | None = None

    def __str__(self) -> str:
        return f"{self.percent}%" if self.percent is not None else str(self.amount)


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    """`kumo.define_spool{...}`: `kind` LocalDisk or RocksDB, both served by the one local-disk
    spool; `flush` and `rocks_params` (checked, kept as given) have no effect there."""

    name: str
    path: str
    kind: str = "LocalDisk"
    flush: bool = False
    min_free_space: MinFree = MinFree(percent=10)
    min_free_inodes: MinFree = MinFree(percent=10)
    rocks_params: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class LocalLogsConfig:
    """`kumo.configure_local_logs{log_dir=, max_segment_duration=}`."""

    log_dir: str
    max_segment_duration: float = 3600.0


@dataclass(frozen=True, slots=True)
class ResolverConfig:
    """`kumo.dns.configure_resolver{name_servers=, options={timeout=}}`: None = the system's."""

    name_servers: tuple[str, ...] | None = None
    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class RedisThrottleConfig:
    """`kumo.configure_redis_throttles{node=, ...}`: throttles and connection limits shared by
    every node using the same Redis server (see docs/throttles.md). Durations are seconds."""

    node: str  # redis://[user[:password]@]host[:port][/db], rediss://..., unix:///path
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    pool_size: int = 10
    connect_timeout: float = 0.5
    read_timeout: float = 0.5


@dataclass(frozen=True, slots=True)
class AccountingConfig:
    """`kumo.configure_accounting_db_path(PATH)`: where the received and delivered counts are
    kept (an sqlite file)."""

    path: str


@dataclass(frozen=True, slots=True)
class HttpInjectLimit:
    """`kumo.set_httpinject_recipient_rate_limit(SPEC)`: the rate of recipients the HTTP
    inject API takes (None: no limit)."""

    rate: Rate | None = None


@dataclass(frozen=True, slots=True)
class InitConfig:
    """Everything the policy's `init` event configured."""

    esmtp_listeners: tuple[EsmtpListenerConfig, ...] = ()
    http_listeners: tuple[HttpListenerConfig, ...] = ()
    spools: tuple[SpoolConfig, ...] = ()
    local_logs: LocalLogsConfig | None = None
    resolver: ResolverConfig | None = None
    redis_throttles: RedisThrottleConfig | None = None
    accounting_db_path: str | None = None
    httpinject_recipient_rate: Rate | None = None


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
