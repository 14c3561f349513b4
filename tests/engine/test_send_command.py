"""`kumoclient send`: one attempt in the foreground; the conversation, the disposition, and
exit 0 / 75 / 69 (SPEC 7)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.engine.conftest import ScriptedMX
from tests.engine.test_connection_failures import closed_port

ROOT = Path(__file__).resolve().parents[2]
OVER_QUOTA = "452 4.2.2 The email account that you tried to reach is over quota."


async def send(*args: str | Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kumoclient",
        "send",
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def message(tmp_path: Path) -> Path:
    path = tmp_path / "m.eml"
    path.write_bytes(b"Subject: hi\n\nhello\n")  # LF line ends, as files have them
    return path


async def test_a_delivered_message_exits_0_and_prints_the_conversation(
    mx: ScriptedMX, tmp_path: Path
) -> None:
    code, out, _ = await send(
        "--from", "a@example.com", "--to", "b@example.net", "--mx", mx.address, message(tmp_path)
    )
    assert code == 0
    assert "> RCPT TO:<b@example.net>" in out
    assert "< 250 2.0.0 OK queued" in out
    assert out.endswith("disposition: Delivery\nresponse: 250 2.0.0 OK queued\n")
    [(_, _, content)] = mx.received
    assert content == b"Subject: hi\r\n\r\nhello\r\n"


async def test_a_rewritten_over_quota_reply_exits_69(mx: ScriptedMX, tmp_path: Path) -> None:
    mx.replies[("RCPT", "full@example.net")] = OVER_QUOTA
    policy = tmp_path / "dsn.lua"
    policy.write_text((ROOT / "examples" / "dsn_rewrite.lua").read_text())
    (tmp_path / "dsn_rewrite.json").write_text((ROOT / "examples" / "dsn_rewrite.json").read_text())
    code, out, _ = await send(
        "--from", "a@example.com", "--to", "full@example.net", "--policy", policy,
        "--mx", mx.address, message(tmp_path),
    )  # fmt: skip
    assert code == 69
    assert "disposition: Bounce\n" in out
    assert "(kumomta: status was rewritten from 452 -> 500)" in out


async def test_a_transient_failure_exits_75(tmp_path: Path) -> None:
    code, out, _ = await send(
        "--from", "a@example.com", "--to", "b@example.net", "--mx", closed_port(), message(tmp_path)
    )
    assert code == 75
    assert "disposition: TransientFailure\n" in out
    assert "failed to connect to any candidate hosts: " in out


async def test_a_bad_address_exits_65_without_connecting(mx: ScriptedMX, tmp_path: Path) -> None:
    code, _, err = await send(
        "--from", "a@example.com", "--to", "b@exa mple.net", "--mx", mx.address, message(tmp_path)
    )
    assert code == 65
    assert "invalid address 'b@exa mple.net'" in err
    assert mx.connections == 0


async def test_the_library_example_delivers_its_message() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "library.py"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0] == "the MX received a message for ['you@example.net']"
    assert lines[1].startswith("Delivery {'code': 250")
