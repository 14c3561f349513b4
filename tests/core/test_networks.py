"""Client addresses against configured ranges, on literal strings."""

from __future__ import annotations

import ipaddress

import pytest

from kumoclient.core.networks import address_in

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1")]


@pytest.mark.parametrize(
    ("address", "inside"),
    [
        ("127.0.0.1", True),
        ("127.9.8.7", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped counts as IPv4
        ("fe80::1%eth0", False),
        ("::1%lo", True),  # the zone is ignored
        ("192.0.2.1", False),
        ("::ffff:192.0.2.1", False),
        ("", False),
        ("localhost", False),  # not an address
    ],
)
def test_address_in(address: str, inside: bool) -> None:
    assert address_in(address, LOOPBACK) is inside
