"""The limits of policy code: instructions per handler call, memory of the Lua state, and the
interruption a stopping daemon asks for.

A handler call that runs more than `max_instructions` Lua instructions, or makes the policy's
Lua state hold more than `max_memory` bytes, is aborted with an error naming the policy's
`file:line`; the event's failure rule then applies. Both limits come from the environment
(`KUMOCLIENT_LUA_MAX_INSTRUCTIONS`, `KUMOCLIENT_LUA_MAX_MEMORY`) unless given. The defaults
are far above what handlers do (a rewrite hook runs a few hundred instructions) and small enough
that a runaway handler holds the event loop for about a second.

`request_interrupt()` is for a signal handler: Lua checks it every QUANTUM instructions (the
same count hook), so SIGTERM ends a handler that would otherwise run to its limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from kumoclient.errors import ConfigError
from kumoclient.policy.config_values import Bad, size

DEFAULT_MAX_INSTRUCTIONS = 100_000_000
DEFAULT_MAX_MEMORY = 256 * 1024 * 1024
QUANTUM = 100_000  # instructions between two checks of the count hook
MIN_MEMORY = 4 * 1024 * 1024  # the state itself, the kumo module and a small policy

INSTRUCTIONS_VARIABLE = "KUMOCLIENT_LUA_MAX_INSTRUCTIONS"
MEMORY_VARIABLE = "KUMOCLIENT_LUA_MAX_MEMORY"


@dataclass(frozen=True, slots=True)
class PolicyLimits:
    """Instructions per handler call; bytes of Lua memory per policy runtime."""

    max_instructions: int = DEFAULT_MAX_INSTRUCTIONS
    max_memory: int = DEFAULT_MAX_MEMORY

    def __post_init__(self) -> None:
        if self.max_instructions < 1:
            raise ConfigError(f"Lua instruction limit {self.max_instructions}: must be positive")
        if self.max_memory < MIN_MEMORY:
            raise ConfigError(
                f"Lua memory limit {self.max_memory}: must be at least {MIN_MEMORY} bytes"
            )

    @property
    def quantum(self) -> int:
        """Instructions between two runs of the count hook."""
        return min(QUANTUM, self.max_instructions)

    @classmethod
    def from_environment(cls) -> PolicyLimits:
        """The limits the environment sets, the defaults for the others (ConfigError when a
        variable holds something else than a count)."""
        instructions = os.environ.get(INSTRUCTIONS_VARIABLE, "").strip().replace("_", "")
        memory = os.environ.get(MEMORY_VARIABLE, "").strip()
        if instructions and not instructions.isdigit():
            raise ConfigError(f"{INSTRUCTIONS_VARIABLE}={instructions!r}: expected a count")
        try:
            max_memory = size(memory) if memory else DEFAULT_MAX_MEMORY
        except Bad as exc:
            raise ConfigError(f"{MEMORY_VARIABLE}={memory!r}: {exc}") from exc
        return cls(int(instructions or DEFAULT_MAX_INSTRUCTIONS), max_memory)


_interrupt = [False]


def request_interrupt() -> None:
    """Abort the handler that runs now, and every handler that runs long from now on (the
    daemon is stopping). Safe to call from a signal handler."""
    _interrupt[0] = True


def clear_interrupt() -> None:
    """Handlers run to their limits again (a library user that stopped and starts again)."""
    _interrupt[0] = False


def interrupted() -> bool:
    """True once `request_interrupt` was called (the count hook asks)."""
    return _interrupt[0]
