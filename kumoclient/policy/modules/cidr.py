"""`kumo.cidr.make_map`: a map from IP networks to values, looked up by address.

As in KumoMTA's CIDR tree, an insertion sets the value of every address its network covers:
the most recent insertion that covers an address is its value (a /24 set after a /32 inside
it replaces the /32; a /32 set after the /24 overrides it for that address). Keys and lookups
take `ip`, `ip/len`, `ip:port`, `[ip]` and `[ip]:port`; a network with host bits set is an
error that suggests the right one."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any, ClassVar

from kumoclient.errors import ConfigError
from kumoclient.policy.api import LuaObject, kumo_function
from kumoclient.policy.modules import args

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> Network:
    """A network or address in strict CIDR form (no netmask notation, no zone)."""
    address, _, length = text.partition("/")
    if "%" in text or (length and not length.isdigit()):
        raise ConfigError(f"{text} is not a valid CIDR")
    try:
        ipaddress.ip_address(address)
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ConfigError(f"{text} is not a valid CIDR: {exc}") from exc
        raise ConfigError(
            f"{text} is not a valid CIDR: host part of address was not zero. Did you mean {loose}?"
        ) from exc


def parse_key(text: str) -> Network:
    """`parse_network`, else the address inside `[...]` or before the last `:`."""
    try:
        return parse_network(text)
    except ConfigError as exc:
        if text.startswith("[") and "]" in text:
            inner = text[1:].split("]", 1)[0]
            return _part(inner, "the []-enclosed portion", text)
        if ":" in text:
            return _part(text.rsplit(":", 1)[0], "the :-delimited portion", text)
        raise ConfigError(str(exc)) from exc


def _part(inner: str, which: str, text: str) -> Network:
    try:
        return parse_network(inner)
    except ConfigError as exc:
        raise ConfigError(
            f"failed to parse '{inner}', {which} of '{text}', as an IP address: {exc}"
        ) from exc


class CidrMap(LuaObject):
    """Networks → values; `map[address]` answers the latest insertion covering it."""

    lua_name: ClassVar[str] = "CidrMap"

    def __init__(self) -> None:
        self._entries: dict[Network, tuple[int, Any]] = {}  # network → (insertion order, value)
        self._lengths: dict[int, set[int]] = {4: set(), 6: set()}
        self._order = 0

    def insert(self, network: Network, value: Any) -> None:
        self._order += 1
        self._entries[network] = (self._order, value)
        self._lengths[network.version].add(network.prefixlen)

    def get(self, network: Network) -> Any:
        best: tuple[int, Any] | None = None
        address = network.network_address
        for length in self._lengths[network.version]:
            found = self._entries.get(ipaddress.ip_network((address, length), strict=False))
            if found is not None and (best is None or found[0] > best[0]):
                best = found
        return None if best is None else best[1]

    def lua_index(self, key: Any) -> Any:
        """A key that is not an address has no value (nil), as the reference shows."""
        try:
            return self.get(parse_key(args.text("cidr map", key, name="key")))
        except ConfigError:
            return None

    def lua_newindex(self, key: Any, value: Any) -> None:
        if value is None:
            raise ConfigError("cidr map: a value cannot be nil")
        self.insert(parse_key(args.text("cidr map", key, name="key")), value)

    def lua_pairs(self) -> Iterator[tuple[Any, Any]]:
        ordered = sorted(self._entries.items(), key=lambda kv: kv[1][0])
        return iter([(str(network), value) for network, (_, value) in ordered])


@kumo_function("cidr.make_map")
def make_map(table: Any = None) -> CidrMap:
    """An empty map, or one seeded from a table of network = value. A table has no order, so
    overlapping networks are inserted widest first: the more specific network wins."""
    result = CidrMap()
    if table is None or table == []:
        return result
    if not isinstance(table, dict):
        raise ConfigError("kumo.cidr.make_map: expected a table of network = value")
    seeded = []
    for key, value in table.items():
        try:
            seeded.append((parse_key(key), value))
        except ConfigError as exc:
            raise ConfigError(f"kumo.cidr.make_map: {exc}") from exc
    for network, value in sorted(seeded, key=lambda item: (item[0].prefixlen, str(item[0]))):
        result.insert(network, value)
    return result
