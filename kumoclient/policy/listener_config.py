"""The tables of `kumo.start_esmtp_listener`, of its `peer` and `via` blocks and of what
`smtp_server_get_dynamic_parameters` returns, and of `kumo.make_listener_domain`, as typed
records. Unknown keys and bad values raise ConfigError naming the function, the key and the
value (nested keys as `peer['10.0.0.0/8'].banner`).

Keys that change nothing here are checked and accepted: `data_buffer_size` (reads are the
event loop's), `deferred_spool` (mail is always on disk before its 250), `batch_handling =
'BifurcateAlways'` (one message per recipient is all kumoclient does). Keys that would change
a decision kumoclient cannot make are refused when set: `batch_handling = 'BatchByDomain'`,
`deferred_queue`, `allow_xclient`, `require_proxy_protocol` set to true.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

from kumoclient.configs import EsmtpListenerConfig, LineEndings, ListenerOverrides, TraceHeaders
from kumoclient.core.listener_domain import ListenerDomain, ReportDisposition
from kumoclient.errors import ConfigError
from kumoclient.policy import config_values as conv

T = TypeVar("T")
Converter = Callable[[Any], Any]


def _enum(kind: type[LineEndings] | type[ReportDisposition]) -> Converter:
    def inner(value: Any) -> Any:
        for member in kind:
            if member.value == value:
                return member
        raise conv.Bad("expected one of " + ", ".join(repr(m.value) for m in kind))

    return inner


def _report(value: Any) -> ReportDisposition:
    """`log_oob` / `log_arf`: true, false, or one of the names."""
    if value is True:
        return ReportDisposition.LOG_THEN_RELAY
    if value is False:
        return ReportDisposition.IGNORE
    converted: ReportDisposition = _enum(ReportDisposition)(value)
    return converted


def _table(value: Any) -> dict[str, Any]:
    if value == []:  # an empty Lua table
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise conv.Bad("expected a table of name = value")
    return value


class Nested:
    """A key whose value is a table of keys of its own: its errors name the whole path."""

    def __init__(self, convert: Callable[[str, str, Any], Any]) -> None:
        self.convert = convert


def _trace_headers(function: str, path: str, value: Any) -> TraceHeaders:
    return _build(function, TraceHeaders, _TRACE_FIELDS, _table(value), path)


def _meta(value: Any) -> tuple[tuple[str, object], ...]:
    return tuple(sorted(_table(value).items()))


def _blocks(function: str, path: str, value: Any) -> tuple[tuple[str, ListenerOverrides], ...]:
    """`peer` / `via`: CIDR → listener keys."""
    table = _table(value)
    conv.cidr_list(list(table))
    return tuple(
        (cidr, _build(function, ListenerOverrides, _GENERIC, params, f"{path}[{cidr!r}]"))
        for cidr, params in table.items()
    )


def _no_effect(value: Any) -> None:
    return None


def _refused_true(value: Any) -> None:
    if conv.boolean(value):
        raise conv.Bad("not supported by kumoclient (only false)")


def _batch_handling(value: Any) -> None:
    if value != "BifurcateAlways":
        raise conv.Bad("only 'BifurcateAlways' is supported (one message per recipient)")


_TRACE_FIELDS: dict[str, Converter | Nested] = {
    "received_header": conv.boolean,
    "supplemental_header": conv.boolean,
    "header_name": conv.string,
    "include_meta_names": conv.str_list,
}

# the keys of a listener, a `peer` / `via` block and a dynamic answer alike
_GENERIC: dict[str, Converter | Nested] = {
    "hostname": conv.string,
    "relay_hosts": conv.cidr_list,
    "banner": conv.string,
    "tls_certificate": conv.string,
    "tls_private_key": conv.string,
    "tls_required_client_ca": conv.string,
    "trace_headers": Nested(_trace_headers),
    "client_timeout": conv.duration,
    "data_processing_timeout": conv.duration,
    "max_messages_per_connection": conv.integer(1),
    "max_recipients_per_message": conv.integer(1),
    "max_message_size": conv.size,
    "invalid_line_endings": _enum(LineEndings),
    "line_length_hard_limit": conv.integer(78),
    "allow_smtp_auth_without_tls": conv.boolean,
    "meta": _meta,
    "peer": Nested(_blocks),
    "via": Nested(_blocks),
    # accepted, no effect here (see the module's text)
    "data_buffer_size": _no_effect,
    "deferred_spool": _no_effect,
    "batch_handling": _batch_handling,
    "deferred_queue": _refused_true,
    "allow_xclient": _refused_true,
    "require_proxy_protocol": _refused_true,
}

_LISTENER: dict[str, Converter | Nested] = {
    **_GENERIC,
    "listen": conv.host_port,
    "max_connections": conv.integer(1),
    # kumoclient's own keys (docs/reception.md, "Limits")
    "max_connections_per_client": conv.integer(1),
    "max_session_duration": conv.duration,
    "max_data_in_memory": conv.size,
}

_DOMAIN: dict[str, Converter | Nested] = {
    "relay_to": conv.boolean,
    "relay_from": conv.cidr_list,
    "log_oob": _report,
    "log_arf": _report,
    "ttl": conv.duration,
}


def _build(
    function: str,
    record: type[T],
    spec: Mapping[str, Converter | Nested],
    params: Any,
    path: str = "",
) -> T:
    """`record` from the table `params` (`path`: where the table is, for errors)."""
    if params is None or params == []:
        params = {}
    if not isinstance(params, dict):
        where = f"{path} = " if path else ""
        raise ConfigError(
            f"{function}: {where}expected a table of options, got {type(params).__name__}"
        )
    known = {f.name for f in fields(record)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{path}.{key}" if path else str(key)
        convert = spec.get(key) if isinstance(key, str) else None
        if convert is None:
            names = ", ".join(sorted(spec))
            raise ConfigError(
                f"{function}: unknown key {name!r} (known keys: {names})", key=name, value=value
            )
        try:
            if isinstance(convert, Nested):
                converted = convert.convert(function, name, value)
            else:
                converted = convert(value)
        except conv.Bad as exc:
            raise ConfigError(f"{function}: {name} = {_show(value)}: {exc}", key=name) from exc
        if key in known:
            values[key] = converted
    return record(**values)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def overrides(params: Any) -> ListenerOverrides:
    """What `smtp_server_get_dynamic_parameters` returned, as listener keys."""
    return _build("smtp_server_get_dynamic_parameters", ListenerOverrides, _GENERIC, params)


def start_esmtp_listener(params: Any) -> EsmtpListenerConfig:
    """`kumo.start_esmtp_listener{...}`."""
    return _build("start_esmtp_listener", EsmtpListenerConfig, _LISTENER, params)


def make_listener_domain(params: Any) -> ListenerDomain:
    """`kumo.make_listener_domain{...}`."""
    return _build("make_listener_domain", ListenerDomain, _DOMAIN, params)
