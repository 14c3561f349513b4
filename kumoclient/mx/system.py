"""Addresses the system knows without DNS: through the system resolver (getaddrinfo), for the
`mx_list` names of local setups, and from the hosts file, for `kumo.dns.lookup_addr`."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket

from kumoclient.errors import DnsTemporaryFailure


async def system_addresses(name: str, port: int, timeout: float) -> list[str]:
    """The addresses of a host name through the system resolver (so /etc/hosts works for the
    `mx_list` names of local setups), IPv4 first. Raises DnsTemporaryFailure."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
            timeout,
        )
    except TimeoutError:
        raise DnsTemporaryFailure(name, "timed out", "address") from None
    except OSError as exc:
        raise DnsTemporaryFailure(name, exc.strerror or str(exc), "address") from None
    addresses: list[str] = []
    for family, *_, sockaddr in sorted(infos, key=lambda info: info[0] != socket.AF_INET):
        address = str(sockaddr[0])
        if family in (socket.AF_INET, socket.AF_INET6) and address not in addresses:
            addresses.append(address)
    return addresses


HOSTS_FILE = "/etc/hosts"
_hosts_cache: dict[str, tuple[float, dict[str, list[str]]]] = {}


def _read_hosts(path: str) -> dict[str, list[str]]:
    """Name (lower case) → its addresses in file order; unreadable: none."""
    try:
        stamp = os.stat(path).st_mtime
    except OSError:
        return {}
    cached = _hosts_cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    table: dict[str, list[str]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                fields = line.partition("#")[0].split()
                try:
                    address = str(ipaddress.ip_address(fields[0].partition("%")[0]))
                except (IndexError, ValueError):
                    continue
                for name in fields[1:]:
                    known = table.setdefault(name.rstrip(".").lower(), [])
                    if address not in known:
                        known.append(address)
    except OSError:
        return {}
    _hosts_cache[path] = (stamp, table)
    return table


def hosts_file_addresses(name: str, path: str | None = None) -> list[str]:
    """The addresses the hosts file (HOSTS_FILE) gives `name` (IPv4 first), or none."""
    found = _read_hosts(path or HOSTS_FILE).get(name.strip().rstrip(".").lower(), [])
    return sorted(found, key=lambda address: ":" in address)
