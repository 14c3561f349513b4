"""Helpers: write a policy file, load it with a fresh memo registry and a settable clock."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyRuntime


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memo(clock: FakeClock) -> MemoRegistry:
    return MemoRegistry(clock)


LoadPolicy = Callable[..., PolicyRuntime]


@pytest.fixture
def load_policy(tmp_path: Path, memo: MemoRegistry) -> LoadPolicy:
    """Write `source` to policy.lua in a fresh directory and load it."""

    def load(source: str, name: str = "policy.lua") -> PolicyRuntime:
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        return PolicyRuntime(path, memo=memo)

    return load


def lua(runtime: PolicyRuntime, code: str) -> object:
    """Run Lua code in the policy's sandbox (test access only)."""
    return runtime._lua.execute(code)
