"""Listen addresses on literal strings."""

from __future__ import annotations

import pytest

from kumoclient.core.listen import show_address, split_listen
from kumoclient.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("127.0.0.1:2025", ("127.0.0.1", 2025)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:25", ("::1", 25)),
        ("[::]:65535", ("::", 65535)),
        ("localhost:8000", ("localhost", 8000)),
    ],
)
def test_a_listen_address_splits_into_host_and_port(text: str, parts: tuple[str, int]) -> None:
    assert split_listen(text) == parts


@pytest.mark.parametrize(
    "text",
    [
        "notanaddress",
        "127.0.0.1",
        "127.0.0.1:",
        ":2025",
        "[]:2025",
        "127.0.0.1:99999",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:25x",
        "127.0.0.1:\u0663",  # a digit, but not an ASCII one
        "",
    ],
)
def test_what_is_not_host_and_port_is_a_config_error_naming_it(text: str) -> None:
    with pytest.raises(ConfigError, match="expected HOST:PORT with a port from 0 to 65535") as e:
        split_listen(text)
    assert e.value.value == text


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        (("127.0.0.1", 2025), "127.0.0.1:2025"),
        (("::1", 25, 0, 0), "[::1]:25"),
        ("/run/kumo.sock", "/run/kumo.sock"),
    ],
)
def test_a_socket_address_is_shown_as_host_and_port(
    address: tuple[object, ...] | str, shown: str
) -> None:
    assert show_address(address) == shown
