"""Listen addresses: `host:port` or `[v6]:port` parsed for binding, socket addresses shown.

Rules: the port is the part after the last `:`, 0 to 65535 in ASCII digits (0: the system
picks a free port; the listeners log the one bound); the host is what comes before it, without
the brackets of `[v6]`, and must not be empty. Whether the host resolves is the bind's question.
"""

from __future__ import annotations

import re

from kumoclient.errors import ConfigError

_PORT = re.compile(r"[0-9]{1,5}")
EXAMPLE = "e.g. '127.0.0.1:2025' or '[::1]:2025'"


def split_listen(text: str) -> tuple[str, int]:
    """(host, port) of `host:port` or `[v6]:port`; ConfigError (with `value`) otherwise."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not _PORT.fullmatch(port) or int(port) > 65535:
        raise ConfigError(
            f"{text!r}: expected HOST:PORT with a port from 0 to 65535, {EXAMPLE}",
            key="listen",
            value=text,
        )
    return host, int(port)


def show_address(address: tuple[object, ...] | str) -> str:
    """`host:port`, or `[v6]:port`, of a socket address (`getsockname()`)."""
    if isinstance(address, str):  # a Unix socket's path
        return address
    host, port = str(address[0]), address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
