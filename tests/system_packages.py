"""The programs the tests and benchmarks run from Debian packages: found one way, and one message
when one is missing.

    path = require("redis-server", package="redis-server")   # absolute path, or NotInstalled

A program is looked for on PATH, then in /usr/sbin and /sbin (where Debian puts postconf,
smtp-sink and smtp-source, which a user's PATH often lacks). The message names the program, the
Debian package that brings it and the commands that install it. The list of packages the tests
need is `scripts/test`'s (the README's test command, which installs them); tests use
`require_or_fail`, which fails the test, never skips it: a missing package must not go unnoticed.
"""

from __future__ import annotations

import os
import shutil

import pytest

SBIN = ("/usr/sbin", "/sbin")
# the README's test command: installs what the tests need, then runs them
INSTALL = "./scripts/test"


class NotInstalled(RuntimeError):
    """A program the tests need is not on this machine."""


def which(program: str) -> str | None:
    """The program's absolute path (PATH first, then /usr/sbin and /sbin), or None."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    return shutil.which(program, path=search)


def missing_message(program: str, package: str) -> str:
    return (
        f"{program} is not installed (Debian package {package}): `{INSTALL}` installs what the "
        f"tests need, or run `apt-get install {package}` as root"
    )


def require(program: str, *, package: str) -> str:
    """The program's absolute path; NotInstalled, naming the package, when it is missing."""
    path = which(program)
    if path is None:
        raise NotInstalled(missing_message(program, package))
    return path


def require_or_fail(program: str, *, package: str) -> str:
    """require(), or fail the calling test with its one-line message (never a skip)."""
    try:
        return require(program, package=package)
    except NotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
