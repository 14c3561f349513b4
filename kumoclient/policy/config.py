"""Typed configuration from the tables given to `kumo.make_*`, `kumo.start_*` and friends.

Each maker is a table of fields: key → (converter, default). Unknown keys and bad values raise
ConfigError naming the function, the key and the value. Defaults are SPEC 5's.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from kumoclient.configs import (
    AccountingConfig,
    EgressPathConfig,
    HttpInjectLimit,
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
from kumoclient.errors import ConfigError
from kumoclient.policy import config_values as conv
from kumoclient.policy import spool_params
from kumoclient.policy.config_values import Converter, parse_mx_entry, parse_rate
from kumoclient.policy.listener_config import make_listener_domain, start_esmtp_listener

__all__ = ["MAKERS", "params_of", "parse_mx_entry", "parse_rate"]

T = TypeVar("T")

# --- makers -----------------------------------------------------------------------------

Fields = Mapping[str, tuple[str, Converter]]  # lua key -> (record field, converter)

_QUEUE_FIELDS: Fields = {
    "retry_interval": ("retry_interval", conv.duration),
    "max_retry_interval": ("max_retry_interval", conv.optional(conv.duration)),
    "max_age": ("max_age", conv.duration),
    "egress_pool": ("egress_pool", conv.optional(conv.string)),
    "protocol": ("mx_list", conv.protocol),
    "generate_dsn": ("generate_dsn", conv.boolean),
}

_EGRESS_FIELDS: Fields = {
    "connection_limit": ("connection_limit", conv.integer(1)),
    "max_deliveries_per_connection": ("max_deliveries_per_connection", conv.integer(1)),
    "max_message_rate": ("max_message_rate", conv.optional(conv.parse_rate)),
    "max_connection_rate": ("max_connection_rate", conv.optional(conv.parse_rate)),
    "enable_tls": ("enable_tls", conv.choice(TlsMode)),
    "smtp_port": ("smtp_port", conv.integer(1, 65535)),
    "response_line_break": ("response_line_break", conv.line_break),
    "prohibited_hosts": ("prohibited_hosts", conv.cidr_list),
    "ehlo_domain": ("ehlo_domain", conv.optional(conv.string)),
    "source_address": ("source_address", conv.optional(conv.ip_address)),
    **{
        name: (name, conv.duration)
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

_HTTP_FIELDS: Fields = {
    "listen": ("listen", conv.host_port),
    "trusted_hosts": ("trusted_hosts", conv.cidr_list),
    "hostname": ("hostname", conv.optional(conv.string)),
    "use_tls": ("use_tls", conv.boolean),
    "tls_certificate": ("tls_certificate", conv.optional(conv.key_source)),
    "tls_private_key": ("tls_private_key", conv.optional(conv.key_source)),
    "request_body_limit": ("request_body_limit", conv.size),
}

_SPOOL_FIELDS: Fields = {
    "name": ("name", conv.string),
    "path": ("path", conv.string),
    "kind": ("kind", conv.one_of("LocalDisk", "RocksDB")),
    "flush": ("flush", conv.boolean),
    "min_free_space": ("min_free_space", spool_params.min_free),
    "min_free_inodes": ("min_free_inodes", spool_params.min_free),
    "rocks_params": ("rocks_params", spool_params.rocks_params),
}

_LOG_FIELDS: Fields = {
    "log_dir": ("log_dir", conv.string),
    "max_segment_duration": ("max_segment_duration", conv.duration),
}


_RESOLVER_FIELDS: Fields = {
    "name_servers": ("name_servers", conv.name_servers),
    "options": ("timeout", conv.resolver_options),
}


_REDIS_FIELDS: Fields = {
    "node": ("node", conv.redis_node),
    "username": ("username", conv.optional(conv.string)),
    "password": ("password", conv.optional(conv.string)),
    "pool_size": ("pool_size", conv.integer(1)),
    "connect_timeout": ("connect_timeout", conv.duration),
    "read_timeout": ("read_timeout", conv.duration),
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
        except (conv.Bad, ConfigError) as exc:
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


def start_http_listener(params: Any) -> HttpListenerConfig:
    """`kumo.start_http_listener{...}`."""
    return _build("start_http_listener", HttpListenerConfig, _HTTP_FIELDS, params)


def define_spool(params: Any) -> SpoolConfig:
    """`kumo.define_spool{name=, path=, kind=, flush=, min_free_space=, min_free_inodes=,
    rocks_params=}`: every kind is served by the one local-disk spool (docs/policy.md)."""
    return _build("define_spool", SpoolConfig, _SPOOL_FIELDS, params)


def configure_accounting_db_path(path: Any) -> AccountingConfig:
    """`kumo.configure_accounting_db_path(PATH)`."""
    try:
        return AccountingConfig(conv.string(path))
    except conv.Bad as exc:
        raise ConfigError(f"configure_accounting_db_path: {exc}", value=path) from exc


def set_httpinject_recipient_rate_limit(spec: Any) -> HttpInjectLimit:
    """`kumo.set_httpinject_recipient_rate_limit(SPEC)`; nil clears the limit."""
    try:
        return HttpInjectLimit(None if spec is None else conv.throttle_spec(spec))
    except conv.Bad as exc:
        raise ConfigError(
            f"set_httpinject_recipient_rate_limit: {_show(spec)}: {exc}", value=spec
        ) from exc


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
    "make_listener_domain": make_listener_domain,
    "start_esmtp_listener": start_esmtp_listener,
    "start_http_listener": start_http_listener,
    "define_spool": define_spool,
    "configure_local_logs": configure_local_logs,
    "configure_redis_throttles": configure_redis_throttles,
    "configure_accounting_db_path": configure_accounting_db_path,
    "set_httpinject_recipient_rate_limit": set_httpinject_recipient_rate_limit,
}


_PARAMS_OF: dict[type, Fields] = {QueueConfig: _QUEUE_FIELDS, EgressPathConfig: _EGRESS_FIELDS}


def params_of(record: QueueConfig | EgressPathConfig) -> dict[str, Any]:
    """The `make_queue_config` / `make_egress_path` table that makes `record` (what
    `kumo.invoke_get_queue_config` and `invoke_get_egress_path_config` return): durations in
    seconds, rates as written, unset optional keys left out."""
    params: dict[str, Any] = {}
    for key, (field_name, _) in _PARAMS_OF[type(record)].items():
        value = getattr(record, field_name)
        if value is None:
            continue
        if key == "protocol":
            value = {"smtp": {"mx_list": [_mx_param(host) for host in value]}}
        elif isinstance(value, TlsMode):
            value = value.value
        elif isinstance(value, Rate):
            value = value.spec
        elif isinstance(value, tuple):
            value = list(value)
        params[key] = value
    return params


def _mx_param(host: MxHost) -> str | dict[str, str]:
    try:
        if parse_mx_entry(host.name) == host:
            return host.name
    except ConfigError:
        pass
    address = f"[{host.host}]" if ":" in host.host else host.host
    return {"name": host.name, "addr": address if host.port is None else f"{address}:{host.port}"}
