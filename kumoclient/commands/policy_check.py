"""`kumoclient policy check FILE`: load a policy, run `init`, list what it registered.

The event handlers and what `init` configured are printed. A load or `init` error is
PolicyError (exit 78, `file:line: message`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kumoclient.policy.runtime import PolicyRuntime

EX_OK = 0


@dataclass(frozen=True, slots=True)
class PolicyCheckOptions:
    """`policy check FILE`."""

    file: Path


def policy_check(options: PolicyCheckOptions, out: TextIO) -> int:
    """Load the policy and run `init`; print the handlers and the listeners."""
    path = options.file
    runtime = PolicyRuntime(path)
    init = runtime.run_init()
    out.write(f"{path}: OK\n")
    events = runtime.registered_events()
    if not events:
        out.write("no event handlers registered\n")
    for name in sorted(events):
        for where in events[name]:
            out.write(f"  {name:<38} {where}\n")
    for listener in init.esmtp_listeners:
        out.write(f"  esmtp listener {listener.listen}\n")
    for http in init.http_listeners:
        out.write(f"  http listener {http.listen}\n")
    if init.local_logs is not None:
        out.write(f"  log records in {init.local_logs.log_dir}\n")
    return EX_OK
