"""`kumoclient run`: check the options, then run the daemon in the foreground.

It builds the daemon, forks its reception workers and serves until SIGTERM/SIGINT.

The options are the daemon's own (`DaemonOptions`). A listen address that is not HOST:PORT
(port 0 to 65535) is UsageError (exit 64); a policy error PolicyError (78); a data directory
that cannot be written CannotCreate (73); an address that cannot be had StartupError (69).
"""

from __future__ import annotations

import asyncio

from kumoclient.core.listen import split_listen
from kumoclient.daemon.daemon import Daemon, event_loop_factory
from kumoclient.daemon.layout import DaemonOptions
from kumoclient.errors import ConfigError, UsageError

EX_OK = 0


def run(options: DaemonOptions) -> int:
    """Run the daemon in the foreground; 0 after an orderly stop."""
    for option, listen in (("--listen", options.listen), ("--http", options.http)):
        if listen is not None:
            try:
                split_listen(listen)
            except ConfigError as exc:
                raise UsageError(f"{option} {exc}") from exc
    daemon = Daemon(options)
    loop_factory = event_loop_factory()
    daemon.start_workers(loop_factory)  # forks: before any event loop or thread exists
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(daemon.run())
    return EX_OK
