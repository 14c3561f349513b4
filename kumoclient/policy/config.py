"""Typed configuration from the tables given to `kumo.make_*`, `kumo.start_*` and friends.

Each maker is a table of fields: key → (converter, default). Unknown keys and bad values raise
ConfigError naming the function, the key and the value. Defaults are SPEC 5's.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from kumoclient.core.duration import UNITS, parse_duration
from kumoclient.core.listen import split_listen
from kumoclient.core.nameserver import parse_nameserver
from kumoclient.core.reply import LINE_BREAKS
from kumoclient.errors import ConfigError
from kumoclient.records import (
    EgressPathConfig,
    EsmtpListenerConfig,
    HttpListenerConfig,
    LocalLogsConfig,
    MxHost,
    QueueConfig,
    Rate,
    RedisThrottleConfig,
    ResolverConfig,
    SpoolConfig,
    TlsMode,
)

Converter = Callable[[Any], Any]
T = TypeVar("T")


class _Bad(ValueError):
    """A converter's complaint; turned into ConfigError with the key and value."""


# --- converters -------------------------------------------------------------------------


def _duration(value: Any) -> float:
    return parse_duration(value, what="duration")


def _optional(convert: Converter) -> Converter:
    def inner(value: Any) -> Any:
        return None if value is None else convert(value)

    return inner


def _int(minimum: int, maximum: int | None = None) -> Converter:
    def inner(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Bad(f"expected an integer, got {type(value).__name__}")
        if isinstance(value, float) and not value.is_integer():
            raise _Bad("expected an integer")
        number = int(value)
        if number < minimum or (maximum is not None and number > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise _Bad(f"must be at least {minimum}{upper}")
        return number

    return inner


def _size(value: Any) -> int:
    """Bytes: an integer, or a string like '20MiB', '10 MB', '512k'."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(i?[bB])?\s*", value)
        if match is None:
            raise _Bad("expected a size such as 20971520, '20MiB' or '512k'")
        scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match[2].lower()]
        return int(match[1]) * scale
    converted: int = _int(1)(value)
    return converted


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"expected true or false, got {type(value).__name__}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Bad("expected a non-empty string")
    return value


def _str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, dict) and not value:  # an empty Lua table
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad("expected a list of strings")
    return tuple(value)


def _cidr_list(value: Any) -> tuple[str, ...]:
    items = _str_list(value)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise _Bad(f"{item!r} is not an IP address or CIDR range") from exc
    return items


def _host_port(value: Any) -> str:
    text = _str(value)
    try:
        split_listen(text)
    except ConfigError as exc:
        raise _Bad("expected 'address:port', e.g. '127.0.0.1:2025' or '[::1]:2025'") from exc
    return text


def _enum(kind: type[TlsMode]) -> Converter:
    def inner(value: Any) -> TlsMode:
        for member in kind:
            if member.value == value:
                return member
        names = ", ".join(repr(m.value) for m in kind)
        raise _Bad(f"expected one of {names}")

    return inner


def _line_break(value: Any) -> str:
    if value not in LINE_BREAKS:
        raise _Bad("expected '\\\\r\\\\n' (the literal form) or ' '")
    converted: str = value
    return converted


_RATE = re.compile(r"\s*(\d+)\s*/\s*(.+?)\s*")


def parse_rate(value: Any) -> Rate:
    """`'100/s'`, `'5000/h'`, `'10/5m'`: a count per period."""
    if not isinstance(value, str):
        raise _Bad("expected a rate such as '100/s' or '5000/h'")
    match = _RATE.fullmatch(value)
    if match is None or int(match[1]) <= 0:
        raise _Bad("expected a rate such as '100/s' or '5000/h'")
    period_text = match[2]
    try:
        period = UNITS[period_text] if period_text in UNITS else parse_duration(period_text)
    except ConfigError as exc:
        raise _Bad(f"unknown period {period_text!r}") from exc
    if period <= 0:
        raise _Bad("the period must be longer than zero")
    return Rate(int(match[1]), period, value)


def parse_mx_entry(entry: Any) -> MxHost:
    """One `mx_list` entry (SPEC 2.1): 'host', 'host:port', '[addr]', '[addr]:port', or a table;
    ConfigError (with `value`) when it is none of these."""
    try:
        return _mx_entry(entry)
    except _Bad as exc:
        raise ConfigError(str(exc), value=entry) from exc


def _mx_entry(entry: Any) -> MxHost:
    if isinstance(entry, dict):
        unknown = set(entry) - {"name", "addr"}
        if unknown or "name" not in entry or "addr" not in entry:
            raise _Bad("a table entry needs exactly the keys 'name' and 'addr'")
        target = _mx_entry(_str(entry["addr"]))
        return MxHost(_str(entry["name"]), target.host, target.port, is_literal=True)
    text = _str(entry)
    if text.startswith("["):
        inner, close, rest = text[1:].partition("]")
        if not close or (rest and not re.fullmatch(r":\d{1,5}", rest)):
            raise _Bad(f"{text!r}: expected '[address]' or '[address]:port'")
        address = inner.removeprefix("IPv6:")
        try:
            ipaddress.ip_address(address)
        except ValueError as exc:
            raise _Bad(f"{text!r}: {address!r} is not an IP address") from exc
        return MxHost(text, address, _port(rest[1:]) if rest else None, is_literal=True)
    if text.count(":") > 1:  # a bare IPv6 address
        try:
            ipaddress.ip_address(text)
        except ValueError as exc:
            raise _Bad(f"{text!r}: write IPv6 addresses as '[addr]:port'") from exc
        return MxHost(text, text, None, is_literal=True)
    host, colon, port = text.partition(":")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", host):
        raise _Bad(f"{text!r}: {host!r} is not a host name")
    literal = _is_ip(host)
    return MxHost(text, host, _port(port) if colon else None, is_literal=literal)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _ip_address(value: Any) -> str:
    text = _str(value)
    if not _is_ip(text):
        raise _Bad(f"{text!r} is not an IP address")
    return text


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 65535:
        raise _Bad(f"port {text!r} is not a number from 1 to 65535")
    return int(text)


def _protocol(value: Any) -> tuple[MxHost, ...] | None:
    if not isinstance(value, dict) or set(value) - {"smtp"}:
        raise _Bad("expected { smtp = { mx_list = {...} } }")
    smtp = value.get("smtp")
    if smtp is None:
        return None
    if not isinstance(smtp, dict) or set(smtp) - {"mx_list"}:
        raise _Bad("expected { smtp = { mx_list = {...} } }")
    mx_list = smtp.get("mx_list")
    if mx_list is None:
        return None
    if not isinstance(mx_list, list) or not mx_list:
        raise _Bad("mx_list must be a non-empty list of hosts")
    return tuple(_mx_entry(entry) for entry in mx_list)


# --- makers -----------------------------------------------------------------------------

Fields = Mapping[str, tuple[str, Converter]]  # lua key -> (record field, converter)

_QUEUE_FIELDS: Fields = {
    "retry_interval": ("retry_interval", _duration),
    "max_retry_interval": ("max_retry_interval", _optional(_duration)),
    "max_age": ("max_age", _duration),
    "egress_pool": ("egress_pool", _optional(_str)),
    "protocol": ("mx_list", _protocol),
    "generate_dsn": ("generate_dsn", _bool),
}

_EGRESS_FIELDS: Fields = {
    "connection_limit": ("connection_limit", _int(1)),
    "max_deliveries_per_connection": ("max_deliveries_per_connection", _int(1)),
    "max_message_rate": ("max_message_rate", _optional(parse_rate)),
    "max_connection_rate": ("max_connection_rate", _optional(parse_rate)),
    "enable_tls": ("enable_tls", _enum(TlsMode)),
    "smtp_port": ("smtp_port", _int(1, 65535)),
    "response_line_break": ("response_line_break", _line_break),
    "prohibited_hosts": ("prohibited_hosts", _cidr_list),
    "ehlo_domain": ("ehlo_domain", _optional(_str)),
    "source_address": ("source_address", _optional(_ip_address)),
    **{
        name: (name, _duration)
        for name in (
            "connect_timeout",
            "banner_timeout",
            "ehlo_timeout",
            "mail_from_timeout",
            "rcpt_to_timeout",
            "data_timeout",
            "data_dot_timeout",
            "rset_timeout",
            "idle_timeout",
            "starttls_timeout",
        )
    },
}

_ESMTP_FIELDS: Fields = {
    "listen": ("listen", _host_port),
    "hostname": ("hostname", _optional(_str)),
    "relay_hosts": ("relay_hosts", _cidr_list),
    "banner": ("banner", _optional(_str)),
    "max_message_size": ("max_message_size", _size),
    "max_recipients_per_message": ("max_recipients_per_message", _int(1)),
    "client_timeout": ("client_timeout", _duration),
    "tls_certificate": ("tls_certificate", _optional(_str)),
    "tls_private_key": ("tls_private_key", _optional(_str)),
    "max_connections": ("max_connections", _int(1)),
    # kumoclient's own keys (docs/reception.md, "Limits")
    "max_connections_per_client": ("max_connections_per_client", _int(1)),
    "max_session_duration": ("max_session_duration", _duration),
    "max_data_in_memory": ("max_data_in_memory", _size),
}

_HTTP_FIELDS: Fields = {
    "listen": ("listen", _host_port),
    "trusted_hosts": ("trusted_hosts", _cidr_list),
    "hostname": ("hostname", _optional(_str)),
    "use_tls": ("use_tls", _bool),
    "tls_certificate": ("tls_certificate", _optional(_str)),
    "tls_private_key": ("tls_private_key", _optional(_str)),
    "request_body_limit": ("request_body_limit", _size),
}

_SPOOL_FIELDS: Fields = {
    "name": ("name", _str),
    "path": ("path", _str),
    "kind": ("kind", _str),
}

_LOG_FIELDS: Fields = {
    "log_dir": ("log_dir", _str),
    "max_segment_duration": ("max_segment_duration", _duration),
}


def _name_servers(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _Bad("expected a non-empty list such as { '127.0.0.1:53' }")
    servers = tuple(_str(entry) for entry in value)
    for server in servers:
        try:
            parse_nameserver(server)
        except ValueError as exc:
            raise _Bad(str(exc)) from None
    return servers


def _resolver_options(value: Any) -> float:
    if not isinstance(value, dict) or set(value) - {"timeout"}:
        raise _Bad("expected { timeout = '5s' }")
    return _duration(value.get("timeout", "5s"))


_RESOLVER_FIELDS: Fields = {
    "name_servers": ("name_servers", _name_servers),
    "options": ("timeout", _resolver_options),
}


_REDIS_SCHEMES = ("redis", "rediss", "unix")


def _redis_url(value: Any) -> str:
    text = _str(value)
    try:
        url = urllib.parse.urlsplit(text)
        port = url.port  # raises ValueError when it is not a number from 0 to 65535
    except ValueError as exc:
        raise _Bad(f"{text!r} is not a URL: {exc}") from None
    if url.scheme not in _REDIS_SCHEMES:
        raise _Bad(
            f"{text!r}: expected a URL such as 'redis://127.0.0.1:6379/', "
            "'rediss://host/' or 'unix:///path/redis.sock'"
        )
    if url.scheme == "unix" and not url.path:
        raise _Bad(f"{text!r}: a unix:// URL needs the socket's path")
    if url.scheme != "unix" and not url.hostname:
        raise _Bad(f"{text!r}: the URL names no host")
    if port == 0:
        raise _Bad(f"{text!r}: port 0 is not a Redis port")
    db = url.path.strip("/")
    if url.scheme != "unix" and db and not db.isdigit():
        raise _Bad(f"{text!r}: the path must be a database number, e.g. '/0'")
    return text


def _redis_node(value: Any) -> str:
    """`node`: one URL, or a list of one URL (KumoMTA's form for a cluster's nodes)."""
    if isinstance(value, list):
        if len(value) != 1:
            raise _Bad(
                "several nodes make a Redis Cluster, which kumoclient does not support; "
                "give one node"
            )
        value = value[0]
    return _redis_url(value)


_REDIS_FIELDS: Fields = {
    "node": ("node", _redis_node),
    "username": ("username", _optional(_str)),
    "password": ("password", _optional(_str)),
    "pool_size": ("pool_size", _int(1)),
    "connect_timeout": ("connect_timeout", _duration),
    "read_timeout": ("read_timeout", _duration),
}


def _build(function: str, record: type[T], spec: Fields, params: Any) -> T:
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ConfigError(f"{function}: expected a table of options, got {type(params).__name__}")
    values: dict[str, Any] = {}
    for key, value in params.items():
        if key not in spec:
            known = ", ".join(sorted(spec))
            raise ConfigError(
                f"{function}: unknown key {key!r} (known keys: {known})", key=str(key), value=value
            )
        field_name, convert = spec[key]
        try:
            values[field_name] = convert(value)
        except (_Bad, ConfigError) as exc:
            raise ConfigError(
                f"{function}: {key} = {_show(value)}: {exc}", key=key, value=value
            ) from exc
    try:
        return record(**values)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{function}: {_missing(exc)}") from exc


def _missing(exc: TypeError) -> str:
    match = re.search(r"argument[s]?: (.*)", str(exc))
    return f"missing required key {match[1]}" if match else str(exc)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def make_queue_config(params: Any) -> QueueConfig:
    """`kumo.make_queue_config{...}`."""
    return _build("make_queue_config", QueueConfig, _QUEUE_FIELDS, params)


def make_egress_path(params: Any) -> EgressPathConfig:
    """`kumo.make_egress_path{...}`; `ehlo_domain` defaults to the machine's host name."""
    config = _build("make_egress_path", EgressPathConfig, _EGRESS_FIELDS, params)
    if config.ehlo_domain is None:
        config = replace(config, ehlo_domain=socket.getfqdn())
    return config


def start_esmtp_listener(params: Any) -> EsmtpListenerConfig:
    """`kumo.start_esmtp_listener{...}`."""
    return _build("start_esmtp_listener", EsmtpListenerConfig, _ESMTP_FIELDS, params)


def start_http_listener(params: Any) -> HttpListenerConfig:
    """`kumo.start_http_listener{...}`."""
    return _build("start_http_listener", HttpListenerConfig, _HTTP_FIELDS, params)


def define_spool(params: Any) -> SpoolConfig:
    """`kumo.define_spool{name=, path=}`."""
    spool = _build("define_spool", SpoolConfig, _SPOOL_FIELDS, params)
    if spool.name not in ("data", "meta"):
        raise ConfigError(
            f"define_spool: name = {spool.name!r}: expected 'data' or 'meta'",
            key="name",
            value=spool.name,
        )
    if spool.kind != "LocalDisk":
        raise ConfigError(
            f"define_spool: kind = {spool.kind!r}: only 'LocalDisk' is supported",
            key="kind",
            value=spool.kind,
        )
    return spool


def configure_local_logs(params: Any) -> LocalLogsConfig:
    """`kumo.configure_local_logs{log_dir=, max_segment_duration=}`."""
    return _build("configure_local_logs", LocalLogsConfig, _LOG_FIELDS, params)


def configure_resolver(params: Any) -> ResolverConfig:
    """`kumo.dns.configure_resolver{name_servers=, options={timeout=}}`."""
    return _build("dns.configure_resolver", ResolverConfig, _RESOLVER_FIELDS, params)


def configure_redis_throttles(params: Any) -> RedisThrottleConfig:
    """`kumo.configure_redis_throttles{node=, ...}` (KumoMTA's `redis.open` parameters).

    `cluster = false` is accepted and ignored; `cluster = true` is refused.
    """
    function = "configure_redis_throttles"
    if isinstance(params, dict) and "cluster" in params:
        cluster = params["cluster"]
        if cluster is not False:
            raise ConfigError(
                f"{function}: cluster = {_show(cluster)}: Redis Cluster is not supported; "
                "give one node and leave out cluster (or set it to false)",
                key="cluster",
                value=cluster,
            )
        params = {key: value for key, value in params.items() if key != "cluster"}
    config = _build(function, RedisThrottleConfig, _REDIS_FIELDS, params)
    for name in ("connect_timeout", "read_timeout"):
        if getattr(config, name) <= 0:
            raise ConfigError(
                f"{function}: {name} must be longer than zero",
                key=name,
                value=getattr(config, name),
            )
    return config


MAKERS: dict[str, Callable[[Any], object]] = {
    "configure_resolver": configure_resolver,
    "make_queue_config": make_queue_config,
    "make_egress_path": make_egress_path,
    "start_esmtp_listener": start_esmtp_listener,
    "start_http_listener": start_http_listener,
    "define_spool": define_spool,
    "configure_local_logs": configure_local_logs,
    "configure_redis_throttles": configure_redis_throttles,
}
