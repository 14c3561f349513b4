"""Fixtures shared by test modules: a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvloop

from kumoclient.engine.dispositions import Dispositions
from kumoclient.engine.metrics import EngineMetrics
from kumoclient.engine.table import MessageTable
from kumoclient.logs import RecordLog
from kumoclient.spool import Spool
from tests import redis_server
from tests.redis_server import RedisServer
from tests.system_packages import require_or_fail


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a loopback port (fails, never skips, when not installed)."""
    require_or_fail(redis_server.REDIS_SERVER, package=redis_server.DEBIAN_PACKAGE)
    with RedisServer(tmp_path / "redis") as server:
        yield server


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The SMTP listener's tests run on both event loops: asyncio's, and uvloop's, which
    `kumoclient run` uses when it is installed (its transports are not asyncio's classes).
    Every other test runs on asyncio's."""
    if item.path.name.startswith("test_listener"):
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


def record_writer(spool: Spool, records: RecordLog) -> Dispositions:
    """The engine's one record writer, alone: what a Reception outside an engine writes its
    Reception records with."""
    return Dispositions(
        spool, records, MessageTable(lambda item: None), EngineMetrics(), hostname="test"
    )


def without_trace(content: bytes) -> bytes:
    """A message as the SMTP client sent it: the trace headers the listener adds on top (the
    supplemental `X-KumoRef` and `Received:`, each with its folded lines) taken off."""
    lines = content.split(b"\r\n")
    index = 0
    for name in (b"X-KumoRef:", b"Received:"):
        if index < len(lines) and lines[index].startswith(name):
            index += 1
            while index < len(lines) and lines[index][:1] in (b" ", b"\t"):
                index += 1
    return b"\r\n".join(lines[index:])
