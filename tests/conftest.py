"""Fixtures shared by test modules: a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import redis_server
from tests.redis_server import RedisServer


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a loopback port (fails, never skips, when not installed)."""
    if not redis_server.available():
        pytest.fail("redis-server is not installed: apt-get install redis-server (see .ci/run)")
    with RedisServer(tmp_path / "redis") as server:
        yield server
