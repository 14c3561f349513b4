"""`kumoclient run`: check the options, then run the daemon in the foreground.

It builds the daemon, forks its reception workers and serves until SIGTERM/SIGINT. With
`--validate` it only checks the policy, as KumoMTA's `kumod --validate` does.

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
from kumoclient.policies import default_policy_path
from kumoclient.policy.check import load_validating, validate

EX_OK = 0


def run(options: DaemonOptions) -> int:
    """Run the daemon in the foreground; 0 after an orderly stop."""
    for option, listen in (("--listen", options.listen), ("--http", options.http)):
        if listen is not None:
            try:
                split_listen(listen)
            except ConfigError as exc:
                raise UsageError(f"{option} {exc}") from exc
    if options.validate:
        return validate_only(options)
    daemon = Daemon(options)
    loop_factory = event_loop_factory()
    daemon.start_workers(loop_factory)  # forks: before any event loop or thread exists
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(daemon.run())
    return EX_OK


def validate_only(options: DaemonOptions) -> int:
    """`run --validate`: load the policy validating, run `pre_init`, `init` and
    `validate_config`; no listener, spool or log is opened. PolicyError (78) when a handler
    fails or calls `kumo.validation_failed()`."""
    runtime = load_validating(options.policy or default_policy_path())
    runtime.run(validate(runtime))
    return EX_OK
