"""Reload: a new runtime from the file; a broken file leaves the old policy active."""

from __future__ import annotations

from pathlib import Path

from kumoclient.core.reply import parse_one_line
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.records import QueueName

REPLY = parse_one_line("452 4.2.2 over quota")
Q = QueueName("d.com")


def hook(code: int) -> str:
    return f"kumo.on('smtp_client_rewrite_delivery_status', function() return {code} end)\n"


async def test_reload_swaps_in_the_new_policy(tmp_path: Path, memo: MemoRegistry) -> None:
    path = tmp_path / "policy.lua"
    path.write_text(hook(500))
    holder = PolicyHolder(path, memo=memo)
    assert (await holder.current.rewrite_delivery_status(REPLY, Q)).reply.code == 500
    path.write_text(hook(551))
    assert holder.reload() is None
    assert (await holder.current.rewrite_delivery_status(REPLY, Q)).reply.code == 551
    assert holder.generation == 2


async def test_failed_reload_keeps_the_old_policy_and_reports(
    tmp_path: Path, memo: MemoRegistry
) -> None:
    path = tmp_path / "policy.lua"
    path.write_text(hook(500))
    holder = PolicyHolder(path, memo=memo)
    old = holder.current
    path.write_text("kumo.on('smtp_client_rewrite_delivery_status', function()\n")
    error = holder.reload()
    assert error is not None
    assert "policy.lua:2:" in str(error)
    assert holder.current is old
    assert (await holder.current.rewrite_delivery_status(REPLY, Q)).reply.code == 500
    assert holder.generation == 1
