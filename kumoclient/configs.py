"""Typed configuration: what the policy's configuration calls and events return (queue and
egress path configs, the listeners' keys, the spool, logs, resolver, throttles, accounting),
frozen, with KumoMTA's defaults. The policy side (policy/config.py, config_values.py) builds
them from Lua tables; every layer reads them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


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
