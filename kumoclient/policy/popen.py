"""`io.popen(command)` for policies: run a shell command and read its whole output.

lupa's Lua is built without `popen`; this one runs `/bin/sh -c command` as an asyncio
subprocess, so the handler waits without blocking the daemon. Only reading is supported (mode
`'r'`). The command has POPEN_TIMEOUT seconds and may print at most POPEN_MAX_OUTPUT bytes;
past either it is killed (with what it started: it runs in a process group of its own) and
`io.popen` raises an error. Its standard input is empty, its
standard error goes where the daemon's goes. The Lua side hands the output back as a file
(`read`, `lines`, `close`, which answers as Lua's does: `true, 'exit', 0` or
`nil, 'exit', code` / `nil, 'signal', number`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from kumoclient.errors import ConfigError

POPEN_TIMEOUT = 30.0
POPEN_MAX_OUTPUT = 16 * 1024 * 1024
_CHUNK = 64 * 1024


async def read_command(
    command: str, *, timeout: float = POPEN_TIMEOUT, max_output: int = POPEN_MAX_OUTPUT
) -> tuple[bytes, str, int]:
    """The output of `command`, and how it ended: ('exit', status) or ('signal', number)."""
    process = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,  # its own process group: what it started dies with it
    )
    try:
        async with asyncio.timeout(timeout):
            output = await _read_bounded(process, command, max_output)
            code = await process.wait()
    except TimeoutError:
        raise ConfigError(f"io.popen: {command!r} ran longer than {timeout:g}s") from None
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    if code < 0:
        return output, "signal", -code
    return output, "exit", code


async def _read_bounded(process: asyncio.subprocess.Process, command: str, limit: int) -> bytes:
    assert process.stdout is not None
    chunks: list[bytes] = []
    size = 0
    while chunk := await process.stdout.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ConfigError(f"io.popen: {command!r} printed more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
