"""Whether a client's address is inside configured ranges (`relay_hosts`, `trusted_hosts`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def address_in(address: str, networks: Sequence[Network]) -> bool:
    """True when `address` (a zone suffix `%eth0` ignored; an IPv4-mapped IPv6 address counts
    as its IPv4 address) is in one of `networks`; False for anything that is not an address."""
    try:
        ip = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
