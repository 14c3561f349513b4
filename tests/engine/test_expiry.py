"""SPEC 2.4: retries with doubling gaps, then Expiration; expiry in the ready queue."""

from __future__ import annotations

import asyncio
import datetime
import itertools
from pathlib import Path

from kumoclient.spool import Spool, Submission
from tests.engine.conftest import MakeEngine, ScriptedMX, records, write_policy


def _at(record: dict[str, object]) -> float:
    stamp = str(record["event_time"]).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp()


async def test_a_recipient_that_always_gets_451_is_retried_with_doubling_gaps_then_expires(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "b@example.net")] = "451 4.3.0 try later"
    policy = write_policy(
        tmp_path / "p.lua", [mx.address], queue="retry_interval = '1s', max_age = '6s',"
    )
    engine = engines(policy)
    await engine.start()
    [message_id] = await engine.submit(
        "a@example.com", ["b@example.net"], b"Subject: x\r\n\r\nx\r\n"
    )
    final = await engine.outcome(message_id)
    assert final["type"] == "Expiration"
    assert final["response"]["code"] == 551
    assert final["response"]["enhanced_code"] == {"class": 5, "subject": 4, "detail": 7}
    assert "configured via max_age" in final["response"]["content"]
    failures = [r for r in records(engine) if r["type"] == "TransientFailure"]
    assert [r["num_attempts"] for r in failures] == [0, 1, 2]
    assert [r["response"]["code"] for r in failures] == [451, 451, 451]
    first, second = (_at(b) - _at(a) for a, b in itertools.pairwise(failures))
    jitter = 0.025  # half of min(1s / 20, 60s)
    # lower bounds only (a busy machine can only add delay): the second wait is at least
    # twice the interval, so it doubled rather than repeated
    assert first >= 1.0 - jitter
    assert second >= 2.0 - jitter
    assert final["num_attempts"] == 3
    await engine.flush()
    assert engine.spool.ids() == []


async def test_a_message_older_than_max_age_expires_without_an_attempt(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    """A message restored from the spool after max_age has passed expires when it comes due,
    without another connection."""
    policy = write_policy(tmp_path / "p.lua", [mx.address], queue="max_age = '1s',")
    spool = Spool(tmp_path / "data" / "spool")
    content = b"Subject: x\r\n\r\nx\r\n"
    old = spool.prepare(Submission("a@example.com", ("b@example.net",), content), now=1e9)
    await spool.start()
    await spool.store(old, content)
    await spool.close()
    engine = engines(policy)
    seen: list[dict[str, object]] = []
    engine.subscribe(seen.append)
    await engine.start()
    async with asyncio.timeout(10):
        while not seen:
            await asyncio.sleep(0.05)
    await engine.flush()
    assert [r["type"] for r in seen] == ["Expiration"]
    assert "older than the expiry time" in str(seen[0]["response"])
    assert mx.connections == 0
    assert engine.spool.ids() == []
