"""`kumoclient policy check FILE`: load a policy as KumoMTA's `--validate` does, try its
configuration events, list what it registered.

The policy is loaded validating (`_VALIDATING_CONFIG` is true, `kumo.spawn_task` does nothing);
`pre_init`, `init` and `validate_config` run; then each configuration event the policy
registered is called once with sample arguments (`policy/check.py`). The event handlers, what
`init` configured and what the sample calls answered are printed. Any failure, or a handler
calling `kumo.validation_failed()`, is PolicyError (exit 78, `file:line: message`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from kumoclient.configs import InitConfig
from kumoclient.policy.check import load_validating, sample_events, validate
from kumoclient.policy.runtime import PolicyRuntime

EX_OK = 0


@dataclass(frozen=True, slots=True)
class PolicyCheckOptions:
    """`policy check FILE`."""

    file: Path


def policy_check(options: PolicyCheckOptions, out: TextIO) -> int:
    """Load the policy, run its lifecycle and sample configuration events; print the
    handlers, the listeners and the samples' answers."""
    path = options.file
    runtime = load_validating(path)
    init, samples = runtime.run(_check(runtime))
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
    for line in samples:
        out.write(f"  sample {line}\n")
    return EX_OK


async def _check(runtime: PolicyRuntime) -> tuple[InitConfig, list[str]]:
    init = await validate(runtime)
    return init, await sample_events(runtime)
