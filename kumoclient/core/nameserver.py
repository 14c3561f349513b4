"""Name server addresses as the policy writes them: `ip`, `ip:port`, `[ipv6]:port`."""

from __future__ import annotations

import ipaddress


def parse_nameserver(text: str) -> tuple[str, int]:
    """`"ip"`, `"ip:port"`, `"[ipv6]:port"` or a bare IPv6 address → (address, port)."""
    address, port = text.strip(), 53
    if address.startswith("["):
        inside, sep, rest = address[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"nameserver {text!r}: expected '[address]:port'")
        address = inside
        if rest:
            port = _parse_port(text, rest[1:])
    elif address.count(":") == 1:
        address, _, port_text = address.partition(":")
        port = _parse_port(text, port_text)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"nameserver {text!r}: {address!r} is not an IP address") from None
    return address, port


def _parse_port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"nameserver {text!r}: bad port {port_text!r}")
    return int(port_text)
