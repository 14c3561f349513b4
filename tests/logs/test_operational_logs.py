"""Operational log lines whose stderr cannot take them (a file on a full disk, a real tmpfs)
are dropped: logging never raises into the code that logs, which may be handling that fault."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from kumoclient import logs
from tests.small_disk import SmallDisk


@pytest.fixture
def reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_a_log_line_on_a_full_disk_is_dropped_and_the_caller_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reset_structlog: None
) -> None:
    with SmallDisk(tmp_path / "disk", "64k") as disk:
        disk.fill()
        with (disk.path / "stderr").open("w") as stderr:
            monkeypatch.setattr(sys, "stderr", stderr)
            logs.configure_logging("json")
            log = logs.get_logger("test")
            with pytest.raises(OSError, match="No space left"):  # what the stream does
                print("x" * 8192, file=stderr, flush=True)
            log.error("delivery log cannot be written", padding="x" * 8192)  # no exception
            log.info("and the next line", padding="y" * 8192)
            disk.free()
            log.info("written once there is room")
        lines = (disk.path / "stderr").read_text()
        assert "written once there is room" in lines
