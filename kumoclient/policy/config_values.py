"""The value converters of the configuration tables (`kumo.make_*`, `kumo.start_*`, ...): each
takes the Lua value (as Python data) and returns the typed value, or raises Bad with what is
wrong; `policy.config` names the function, key and value around it."""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from kumoclient.configs import KeySource, MxHost, Rate, TlsMode
from kumoclient.core.duration import UNITS, parse_duration
from kumoclient.core.listen import split_listen
from kumoclient.core.nameserver import parse_nameserver
from kumoclient.core.reply import LINE_BREAKS
from kumoclient.errors import ConfigError

Converter = Callable[[Any], Any]


class Bad(ValueError):
    """A converter's complaint; turned into ConfigError with the key and value."""


# --- converters -------------------------------------------------------------------------


def duration(value: Any) -> float:
    return parse_duration(value, what="duration")


def optional(convert: Converter) -> Converter:
    def inner(value: Any) -> Any:
        return None if value is None else convert(value)

    return inner


def integer(minimum: int, maximum: int | None = None) -> Converter:
    def inner(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Bad(f"expected an integer, got {type(value).__name__}")
        if isinstance(value, float) and not value.is_integer():
            raise Bad("expected an integer")
        number = int(value)
        if number < minimum or (maximum is not None and number > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise Bad(f"must be at least {minimum}{upper}")
        return number

    return inner


def size(value: Any) -> int:
    """Bytes: an integer, or a string like '20MiB', '10 MB', '512k'."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)(i?[bB])?\s*", value)
        if match is None:
            raise Bad("expected a size such as 20971520, '20MiB' or '512k'")
        scale = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match[2].lower()]
        return int(match[1]) * scale
    converted: int = integer(1)(value)
    return converted


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Bad(f"expected true or false, got {type(value).__name__}")
    return value


def string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise Bad("expected a non-empty string")
    return value


def one_of(*names: str) -> Converter:
    """One of `names`, spelt exactly."""

    def inner(value: Any) -> str:
        if value not in names:
            raise Bad("expected one of " + ", ".join(repr(n) for n in names))
        text: str = value
        return text

    return inner


_VAULT_KEYS = frozenset({"vault_mount", "vault_path", "vault_key", "vault_address", "vault_token"})


def key_source(value: Any) -> KeySource:
    """A KumoMTA KeySource: a file name, `{key_data=...}` (the data), or a Vault secret
    `{vault_mount=, vault_path=, vault_key=, vault_address=, vault_token=}` (read when used)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict):
        if set(value) == {"key_data"} and isinstance(value["key_data"], str | bytes):
            data = value["key_data"]
            return data.encode("utf-8") if isinstance(data, str) else data
        keys = set(value)
        if {"vault_mount", "vault_path"} <= keys <= _VAULT_KEYS and all(
            isinstance(v, str) for v in value.values()
        ):
            return tuple(sorted(value.items()))
    raise Bad(
        "expected a KeySource: a file name, {key_data=...} or "
        "{vault_mount=..., vault_path=...} (strings)"
    )


def str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, dict) and not value:  # an empty Lua table
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Bad("expected a list of strings")
    return tuple(value)


def cidr_list(value: Any) -> tuple[str, ...]:
    items = str_list(value)
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise Bad(f"{item!r} is not an IP address or CIDR range") from exc
    return items


def host_port(value: Any) -> str:
    text = string(value)
    try:
        split_listen(text)
    except ConfigError as exc:
        raise Bad("expected 'address:port', e.g. '127.0.0.1:2025' or '[::1]:2025'") from exc
    return text


def choice(kind: type[TlsMode]) -> Converter:
    def inner(value: Any) -> TlsMode:
        for member in kind:
            if member.value == value:
                return member
        names = ", ".join(repr(m.value) for m in kind)
        raise Bad(f"expected one of {names}")

    return inner


def line_break(value: Any) -> str:
    if value not in LINE_BREAKS:
        raise Bad("expected '\\\\r\\\\n' (the literal form) or ' '")
    converted: str = value
    return converted


_RATE = re.compile(r"\s*(\d+)\s*/\s*(.+?)\s*")


def parse_rate(value: Any) -> Rate:
    """`'100/s'`, `'5000/h'`, `'10/5m'`: a count per period."""
    if not isinstance(value, str):
        raise Bad("expected a rate such as '100/s' or '5000/h'")
    match = _RATE.fullmatch(value)
    if match is None or int(match[1]) <= 0:
        raise Bad("expected a rate such as '100/s' or '5000/h'")
    period_text = match[2]
    try:
        period = UNITS[period_text] if period_text in UNITS else parse_duration(period_text)
    except ConfigError as exc:
        raise Bad(f"unknown period {period_text!r}") from exc
    if period <= 0:
        raise Bad("the period must be longer than zero")
    return Rate(int(match[1]), period, value)


_THROTTLE_PERIODS = {
    **dict.fromkeys(("h", "hr", "hour"), 3600),
    **dict.fromkeys(("m", "min", "minute"), 60),
    **dict.fromkeys(("s", "sec", "second"), 1),
    **dict.fromkeys(("d", "day"), 86400),
}
_THROTTLE = re.compile(r"(?P<limit>[\d_,]+)/(?P<scale>\d*)(?P<period>[a-z]+)")


def _separated(text: str) -> int:
    digits = text.replace("_", "").replace(",", "")
    if not digits.isdigit():
        raise Bad(f"invalid number {text!r}")
    return int(digits)


def throttle_spec(value: Any) -> Rate:
    """KumoMTA's throttle specification (kumo.make_throttle): `[local:]LIMIT/[N]PERIOD
    [,max_burst=B]`, LIMIT and B with optional `_` or `,` separators (`local:10,000/s`),
    PERIOD one of d, h, m, s (or day, hour/hr, minute/min, second/sec)."""
    if not isinstance(value, str):
        raise Bad("expected a throttle such as '100/s' or 'local:10,000/h,max_burst=50'")
    text, local = value, value.startswith("local:")
    if local:
        text = text[len("local:") :]
    text, _, burst_text = text.partition(",max_burst=")
    match = _THROTTLE.fullmatch(text)
    if match is None:
        raise Bad(f"expected 'limit/period' such as '100/s', got {value!r}")
    period = _THROTTLE_PERIODS.get(match["period"])
    if period is None:
        raise Bad(f"unknown period {match['period']!r} (d, h, m, s)")
    limit = _separated(match["limit"])
    if limit == 0:
        raise Bad("the limit must be greater than 0")
    burst = _separated(burst_text) if burst_text else None
    if burst == 0:
        raise Bad("max_burst must be greater than 0")
    scale = int(match["scale"]) if match["scale"] else 1
    return Rate(limit, float(period * scale), value, burst=burst, local=local)


def parse_mx_entry(entry: Any) -> MxHost:
    """One `mx_list` entry (SPEC 2.1): 'host', 'host:port', '[addr]', '[addr]:port', or a table;
    ConfigError (with `value`) when it is none of these."""
    try:
        return mx_entry(entry)
    except Bad as exc:
        raise ConfigError(str(exc), value=entry) from exc


def mx_entry(entry: Any) -> MxHost:
    if isinstance(entry, dict):
        unknown = set(entry) - {"name", "addr"}
        if unknown or "name" not in entry or "addr" not in entry:
            raise Bad("a table entry needs exactly the keys 'name' and 'addr'")
        target = mx_entry(string(entry["addr"]))
        return MxHost(string(entry["name"]), target.host, target.port, is_literal=True)
    text = string(entry)
    if text.startswith("["):
        inner, close, rest = text[1:].partition("]")
        if not close or (rest and not re.fullmatch(r":\d{1,5}", rest)):
            raise Bad(f"{text!r}: expected '[address]' or '[address]:port'")
        address = inner.removeprefix("IPv6:")
        try:
            ipaddress.ip_address(address)
        except ValueError as exc:
            raise Bad(f"{text!r}: {address!r} is not an IP address") from exc
        return MxHost(text, address, port_number(rest[1:]) if rest else None, is_literal=True)
    if text.count(":") > 1:  # a bare IPv6 address
        try:
            ipaddress.ip_address(text)
        except ValueError as exc:
            raise Bad(f"{text!r}: write IPv6 addresses as '[addr]:port'") from exc
        return MxHost(text, text, None, is_literal=True)
    host, colon, port = text.partition(":")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", host):
        raise Bad(f"{text!r}: {host!r} is not a host name")
    literal = is_ip(host)
    return MxHost(text, host, port_number(port) if colon else None, is_literal=literal)


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def ip_address(value: Any) -> str:
    text = string(value)
    if not is_ip(text):
        raise Bad(f"{text!r} is not an IP address")
    return text


def port_number(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 65535:
        raise Bad(f"port {text!r} is not a number from 1 to 65535")
    return int(text)


def protocol(value: Any) -> tuple[MxHost, ...] | None:
    if not isinstance(value, dict) or set(value) - {"smtp"}:
        raise Bad("expected { smtp = { mx_list = {...} } }")
    smtp = value.get("smtp")
    if smtp is None:
        return None
    if not isinstance(smtp, dict) or set(smtp) - {"mx_list"}:
        raise Bad("expected { smtp = { mx_list = {...} } }")
    mx_list = smtp.get("mx_list")
    if mx_list is None:
        return None
    if not isinstance(mx_list, list) or not mx_list:
        raise Bad("mx_list must be a non-empty list of hosts")
    return tuple(mx_entry(entry) for entry in mx_list)


def name_servers(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise Bad("expected a non-empty list such as { '127.0.0.1:53' }")
    servers = tuple(string(entry) for entry in value)
    for server in servers:
        try:
            parse_nameserver(server)
        except ValueError as exc:
            raise Bad(str(exc)) from None
    return servers


def resolver_options(value: Any) -> float:
    if not isinstance(value, dict) or set(value) - {"timeout"}:
        raise Bad("expected { timeout = '5s' }")
    return duration(value.get("timeout", "5s"))


_REDIS_SCHEMES = ("redis", "rediss", "unix")


def redis_url(value: Any) -> str:
    text = string(value)
    try:
        url = urllib.parse.urlsplit(text)
        port = url.port  # raises ValueError when it is not a number from 0 to 65535
    except ValueError as exc:
        raise Bad(f"{text!r} is not a URL: {exc}") from None
    if url.scheme not in _REDIS_SCHEMES:
        raise Bad(
            f"{text!r}: expected a URL such as 'redis://127.0.0.1:6379/', "
            "'rediss://host/' or 'unix:///path/redis.sock'"
        )
    if url.scheme == "unix" and not url.path:
        raise Bad(f"{text!r}: a unix:// URL needs the socket's path")
    if url.scheme != "unix" and not url.hostname:
        raise Bad(f"{text!r}: the URL names no host")
    if port == 0:
        raise Bad(f"{text!r}: port 0 is not a Redis port")
    db = url.path.strip("/")
    if url.scheme != "unix" and db and not db.isdigit():
        raise Bad(f"{text!r}: the path must be a database number, e.g. '/0'")
    return text


def redis_node(value: Any) -> str:
    """`node`: one URL, or a list of one URL (KumoMTA's form for a cluster's nodes)."""
    if isinstance(value, list):
        if len(value) != 1:
            raise Bad(
                "several nodes make a Redis Cluster, which kumoclient does not support; "
                "give one node"
            )
        value = value[0]
    return redis_url(value)
