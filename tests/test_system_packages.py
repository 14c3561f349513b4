"""The programs the tests need from Debian packages: a missing one fails the test with one line
naming the package and the command that installs it, and `scripts/test` installs every package
the tests name."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import redis_server, system_packages
from tests.integration import postfix
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "test"


def script_packages() -> dict[str, str]:
    """scripts/test's list: {Debian package: the program that shows it is installed}."""
    listing = SCRIPT.read_text().split("\nPACKAGES=(\n", 1)[1].split("\n)\n", 1)[0]
    return dict(re.findall(r'^\s*"(\S+) (\S+)"\s*$', listing, re.MULTILINE))


def test_scripts_test_installs_every_package_the_tests_name() -> None:
    packages = script_packages()
    assert packages[redis_server.DEBIAN_PACKAGE] == redis_server.REDIS_SERVER
    assert packages[postfix.DEBIAN_PACKAGE] == "postconf"


def test_scripts_test_is_valid_bash() -> None:
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert SCRIPT.stat().st_mode & 0o111, "scripts/test is not executable"


def test_a_missing_program_fails_the_test_naming_the_package_and_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(pytest.fail.Exception) as failed:
        system_packages.require_or_fail("redis-server", package="redis-server")
    assert str(failed.value) == (
        "redis-server is not installed (Debian package redis-server): `./scripts/test` installs "
        "what the tests need, or run `apt-get install redis-server` as root"
    )


def test_a_missing_redis_server_is_named_when_starting_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(system_packages.NotInstalled, match=r"\(Debian package redis-server\)"):
        RedisServer(tmp_path).start()


def test_programs_are_found_in_sbin_when_path_lacks_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    program = tmp_path / "smtp-sink"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(system_packages, "SBIN", (str(tmp_path),))
    assert system_packages.require("smtp-sink", package="postfix") == str(program)
    with pytest.raises(system_packages.NotInstalled, match=r"^postconf is not installed"):
        system_packages.require("postconf", package="postfix")
