"""Scheduling constraints (`msg:set_scheduling`, here through `msg:import_scheduling_header` in
the reception event) honoured by real deliveries to a scripted MX: the first attempt waits for
`first_attempt` and for the window's start, a retry that would fall outside the window waits
for the next one, `expires` replaces max_age, a message that waited in the ready queue past its
window's end goes back without an attempt, and all of it survives a restart.

Windows are a few seconds from now, in a fixed-offset zone where it is around noon (so that
no window crosses midnight whatever the time of the test run)."""

from __future__ import annotations

import asyncio
import datetime
import json
import time
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from kumoclient.core.selector import Selector
from kumoclient.testing import KumoEngine, ScriptedMX
from kumoclient.testing.engine import make_message

POLICY = """
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { retry_interval = '10s' }
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path { connection_limit = 1 }
end)
kumo.on('smtp_server_message_received', function(msg)
  msg:import_scheduling_header('X-Schedule', true)
end)
"""


def noon_zone() -> tuple[str, datetime.timezone]:
    """An `Etc/GMT` zone where the local hour is about 12 now, and its offset."""
    hours = 12 - datetime.datetime.now(datetime.UTC).hour
    hours = max(-12, min(14, hours))
    name = "Etc/GMT" if hours == 0 else f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}"
    return name, datetime.timezone(datetime.timedelta(hours=hours))


EVERY_DAY = "Mon,Tue,Wed,Thu,Fri,Sat,Sun"


def window(start: float, end: float) -> dict[str, str]:
    """A window from `start` to `end` (Unix seconds, whole seconds kept) every day."""
    name, zone = noon_zone()
    first = datetime.datetime.fromtimestamp(start, zone)
    last = datetime.datetime.fromtimestamp(end, zone)
    return {
        "dow": EVERY_DAY,
        "tz": name,
        "start": first.strftime("%H:%M:%S"),
        "end": last.strftime("%H:%M:%S"),
    }


def rfc3339(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat()


def scheduled(recipient: str, schedule: dict[str, str]) -> bytes:
    """A message carrying its schedule in the header the policy imports."""
    content = make_message(recipients=[recipient])
    return f"X-Schedule: {json.dumps(schedule)}\r\n".encode() + content


def wall(mx: ScriptedMX, index: int) -> float:
    """When the MX took its `index`-th message, as Unix time."""
    return mx.received_at[index] + (time.time() - time.monotonic())


def next_due(engine: KumoEngine) -> float | None:
    (state,) = engine.engine.queue_states()
    return state.next_due


async def start(tmp_path: Path, mx: ScriptedMX) -> KumoEngine:
    policy = tmp_path / "policy.lua"
    policy.write_text(POLICY)
    return await KumoEngine.start(policy, data_dir=tmp_path / "data", mx=mx)


async def test_the_first_attempt_waits_for_first_attempt(tmp_path: Path, mx: ScriptedMX) -> None:
    engine = await start(tmp_path, mx)
    try:
        first = time.time() + 2
        content = scheduled("a@example.net", {"first_attempt": rfc3339(first)})
        [message_id] = await engine.submit("a@example.net", content=content, via_smtp=True)
        delivery = await engine.next_disposition(message_id)
        assert delivery.type == "Delivery"
        assert wall(mx, 0) >= first
        assert b"X-Schedule" not in mx.received[0].content  # the policy removed it
    finally:
        await engine.stop()


async def test_the_first_attempt_waits_for_the_window(tmp_path: Path, mx: ScriptedMX) -> None:
    engine = await start(tmp_path, mx)
    try:
        opens = int(time.time()) + 3
        content = scheduled("a@example.net", window(opens, opens + 120))
        [message_id] = await engine.submit("a@example.net", content=content, via_smtp=True)
        assert next_due(engine) == opens
        assert (await engine.next_disposition(message_id)).type == "Delivery"
        assert wall(mx, 0) >= opens
    finally:
        await engine.stop()


async def test_a_retry_outside_the_window_waits_for_the_next_one(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    mx.reply("a@example.net", "452 4.2.2 Mailbox full")
    engine = await start(tmp_path, mx)
    try:
        now = int(time.time())
        content = scheduled("a@example.net", window(now - 60, now + 3))
        [message_id] = await engine.submit("a@example.net", content=content, via_smtp=True)
        failure = await engine.next_disposition(message_id)
        assert failure.type == "TransientFailure"
        # the retry (10 s later) falls after the window's end: tomorrow's start instead
        assert next_due(engine) == now - 60 + 86400
    finally:
        await engine.stop()


async def test_expires_replaces_max_age(tmp_path: Path, mx: ScriptedMX) -> None:
    mx.reply("a@example.net", "452 4.2.2 Mailbox full")
    engine = await start(tmp_path, mx)
    try:
        expires = time.time() + 5  # before the retry, 10 s after the first attempt
        content = scheduled("a@example.net", {"expires": rfc3339(expires)})
        [message_id] = await engine.submit("a@example.net", content=content, via_smtp=True)
        assert (await engine.next_disposition(message_id)).type == "TransientFailure"
        expiration = await engine.next_disposition(message_id)
        assert (expiration.type, expiration.code) == ("Expiration", 551)
        assert expiration.content.startswith("Next delivery time would be at ")
        assert expiration.content.endswith(" configured via set_scheduling")
        await engine.engine.flush()
        assert engine.engine.spool.ids() == []
    finally:
        await engine.stop()


class SlowMX(ScriptedMX):
    """Takes `delay` seconds to answer the first message's final dot (a busy server)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if not self.received:
            await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


async def test_no_attempt_starts_after_the_window_ends(tmp_path: Path) -> None:
    """Two messages due at the window's start, one connection, a server busy with the first
    past the window's end: the second goes back to wait for tomorrow's window, unattempted."""
    async with SlowMX(delay=8) as mx:
        engine = await start(tmp_path, mx)
        try:
            opens = int(time.time()) + 1
            schedule = window(opens, opens + 5)
            ids = [
                (await engine.submit(rcpt, content=scheduled(rcpt, schedule), via_smtp=True))[0]
                for rcpt in ("a@example.net", "b@example.net")
            ]
            first = await engine.next_disposition(ids[0])
            assert first.type == "Delivery"
            await engine.engine.flush()
            item = engine.engine.table.get(ids[1])
            assert item is not None
            assert item.message.due == opens + 86400
            assert [r.type for r in engine.records if r.id == ids[1]] == ["Reception"]
            assert [r.recipients for r in mx.received] == [[first.recipient]]
            assert engine.engine.spool.load(ids[1]).due == opens + 86400  # persisted
        finally:
            await engine.stop()


async def test_the_schedule_survives_a_restart(tmp_path: Path, mx: ScriptedMX) -> None:
    engine = await start(tmp_path, mx)
    first = int(time.time()) + 3
    schedule = {"first_attempt": rfc3339(first), "expires": rfc3339(first + 3600)}
    try:
        [message_id] = await engine.submit(
            "a@example.net", content=scheduled("a@example.net", schedule), via_smtp=True
        )
    finally:
        await engine.stop()
    spooled = engine.engine.spool.load(message_id)
    assert spooled.schedule is not None
    assert spooled.due == first
    assert mx.received == []
    engine = await start(tmp_path, mx)
    try:
        assert (await engine.final_disposition(message_id)).type == "Delivery"
        assert wall(mx, 0) >= first
    finally:
        await engine.stop()


async def test_retry_now_waits_for_the_schedule(tmp_path: Path, mx: ScriptedMX) -> None:
    engine = await start(tmp_path, mx)
    try:
        first = int(time.time()) + 3600
        content = scheduled("a@example.net", {"first_attempt": rfc3339(first)})
        await engine.submit("a@example.net", content=content, via_smtp=True)
        assert engine.engine.retry_now(Selector()) == 1
        assert next_due(engine) == first
    finally:
        await engine.stop()
