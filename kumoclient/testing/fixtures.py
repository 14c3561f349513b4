"""The pytest fixtures of the plugin: `scripted_mx` and `kumo_engine`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from kumoclient.testing.engine import KumoEngine
from kumoclient.testing.mx import ScriptedMX

_F = TypeVar("_F", bound=Callable[..., Any])


class EngineFactory(Protocol):
    """The `kumo_engine` fixture: `await kumo_engine("policy.lua", mx=scripted_mx)`."""

    def __call__(
        self,
        policy: str | os.PathLike[str],
        *,
        mx: ScriptedMX | str | None = None,
        data_dir: Path | None = None,
    ) -> Awaitable[KumoEngine]: ...


def _needs_pytest_asyncio(fixture: _F) -> _F:
    """Without pytest-asyncio the fixtures exist but fail with what to install."""

    def missing() -> None:
        pytest.fail(
            f"the kumoclient fixture {fixture.__name__!r} needs pytest-asyncio: "
            "pip install pytest-asyncio"
        )

    missing.__name__ = fixture.__name__
    missing.__doc__ = fixture.__doc__
    return pytest.fixture(name=fixture.__name__)(missing)  # type: ignore[return-value]


try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - depends on the user's environment
    _async_fixture = _needs_pytest_asyncio  # type: ignore[assignment]


@_async_fixture
async def scripted_mx() -> AsyncIterator[ScriptedMX]:
    """A started ScriptedMX (no PIPELINING); stopped after the test."""
    async with ScriptedMX() as server:
        yield server


@_async_fixture
async def kumo_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[EngineFactory]:
    """Start engines: `engine = await kumo_engine("policy.lua", mx=scripted_mx)`.

    A relative policy path is taken from the test file's directory. Spool and logs go under
    the test's tmp_path (or `data_dir`); the policy's `init` is not run. Every engine started
    is stopped after the test.
    """
    started: list[KumoEngine] = []

    async def start(
        policy: str | os.PathLike[str],
        *,
        mx: ScriptedMX | str | None = None,
        data_dir: Path | None = None,
    ) -> KumoEngine:
        path = Path(policy)
        if not path.is_absolute():
            path = request.path.parent / path
        where = data_dir or tmp_path / f"kumo-engine-{len(started)}"
        engine = await KumoEngine.start(path, data_dir=where, mx=mx)
        started.append(engine)
        return engine

    yield start
    for engine in reversed(started):
        await engine.stop()
