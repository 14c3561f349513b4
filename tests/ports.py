"""Free loopback ports for the servers tests start, chosen below the kernel's ephemeral range
(net.ipv4.ip_local_port_range, 32768-60999 by default): a port there can be taken by any
outgoing connection on this machine (another test suite, a benchmark) between the moment a
test learns it and the moment a restarted daemon binds it again."""

from __future__ import annotations

import random
import socket

LOW, HIGH = 20000, 32767
_random = random.Random()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on or is bound to now."""
    for _ in range(1000):
        port = _random.randint(LOW, HIGH)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {LOW} and {HIGH}")
