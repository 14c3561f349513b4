"""The one decision of what becomes of a message: table-driven, whole sequences included."""

from __future__ import annotations

import datetime

import pytest

from kumoclient.configs import QueueConfig
from kumoclient.core import disposition
from kumoclient.core.disposition import EXPIRED, HookAnswer, decide, rewrite
from kumoclient.core.schedule import parse_schedule, schedule_json
from kumoclient.core.synthesized import Synthesized, admin_bounce, synthesize
from kumoclient.records import EnhancedCode, RecordType, Reply

T = RecordType
CONFIG = QueueConfig(retry_interval=60.0, max_age=3600.0)
NOW = 1_000_000.0
QUOTA = Reply(452, EnhancedCode(4, 2, 2), "over quota", "RCPT TO:<a@b>\r\n")


def _types(decision: disposition.Decision) -> list[tuple[RecordType, int, int]]:
    return [(r.type, r.reply.code, r.num_attempts) for r in decision.records]


@pytest.mark.parametrize(
    ("attempt", "hook", "expected", "requeued"),
    [
        (
            disposition.accepted(Reply(250, None, "ok", ".\r\n")),
            None,
            [(T.DELIVERY, 250, 0)],
            False,
        ),
        (disposition.rejected(Reply(550, None, "no")), None, [(T.BOUNCE, 550, 0)], False),
        (disposition.rejected(QUOTA), None, [(T.TRANSIENT_FAILURE, 452, 0)], True),
        (disposition.rejected(QUOTA), HookAnswer(500), [(T.BOUNCE, 500, 0)], False),
        (disposition.rejected(QUOTA), HookAnswer(250), [(T.DELIVERY, 250, 0)], False),
        (disposition.rejected(QUOTA), HookAnswer(452), [(T.TRANSIENT_FAILURE, 452, 0)], True),
        (
            disposition.rejected(QUOTA),
            HookAnswer(error="boom"),
            [(T.TRANSIENT_FAILURE, 452, 0)],
            True,
        ),
        (
            disposition.rejected(Reply(503, None, "bad sequence")),
            None,
            [(T.TRANSIENT_FAILURE, 503, 0)],
            True,
        ),
        # made-up replies are judged by their code, never by the rewrite hook
        (
            disposition.failed(synthesize(Synthesized.NULL_MX)),
            HookAnswer(250),
            [(T.BOUNCE, 556, 0)],
            False,
        ),
        (
            disposition.failed(synthesize(Synthesized.CONNECT_FAILED, failures="x")),
            None,
            [(T.TRANSIENT_FAILURE, 400, 0)],
            True,
        ),
        (
            disposition.failed(synthesize(Synthesized.PROHIBITED, address="127.0.0.1")),
            None,
            [(T.BOUNCE, 550, 0)],
            False,
        ),
        (disposition.admin_bounced(admin_bounce("why")), None, [(T.ADMIN_BOUNCE, 551, 0)], False),
        (EXPIRED, None, [(T.EXPIRATION, 551, 0)], False),
    ],
)
def test_what_happened_decides_the_records_and_the_spool(
    attempt: disposition.Attempt,
    hook: HookAnswer | None,
    expected: list[tuple[RecordType, int, int]],
    requeued: bool,
) -> None:
    decision = decide(attempt, attempts=0, created=NOW, config=CONFIG, now=NOW, hook=hook)
    assert _types(decision) == expected
    assert (decision.due is not None) == requeued
    assert (decision.final is None) == requeued


def test_a_rewritten_reply_keeps_its_enhanced_code_and_command_and_gets_the_note() -> None:
    decision = decide(
        disposition.rejected(QUOTA),
        attempts=0,
        created=NOW,
        config=CONFIG,
        now=NOW,
        hook=HookAnswer(500),
    )
    [record] = decision.records
    assert record.reply == Reply(
        500,
        EnhancedCode(4, 2, 2),
        "over quota (kumomta: status was rewritten from 452 -> 500)",
        "RCPT TO:<a@b>\r\n",
    )
    assert decision.rewrite is not None
    assert decision.rewrite.rewritten


def test_a_retry_sequence_doubles_the_delay_until_max_age_then_expires() -> None:
    """A message that always fails transiently, attempted exactly when due: 60, 120, 240,
    480, 960 s, then the next delay (1920 s) would pass the hour: Expiration."""
    created, now, attempts = NOW, NOW, 0
    delays: list[float] = []
    while True:
        decision = decide(
            disposition.rejected(QUOTA), attempts=attempts, created=created, config=CONFIG, now=now
        )
        if decision.due is None:
            break
        delays.append(decision.due - now)
        assert decision.attempts == attempts + 1
        assert decision.last_response == "452 4.2.2 over quota"
        now, attempts = decision.due, decision.attempts
    assert delays == [60.0, 120.0, 240.0, 480.0, 960.0]
    assert _types(decision) == [(T.TRANSIENT_FAILURE, 452, 5), (T.EXPIRATION, 551, 6)]
    assert decision.records[1].reply.content.startswith("Next delivery time would be at ")


def test_an_operator_bounce_during_a_transient_attempt_follows_its_failure() -> None:
    decision = decide(
        disposition.rejected(QUOTA),
        attempts=2,
        created=NOW,
        config=CONFIG,
        now=NOW,
        doomed=admin_bounce("stop"),
    )
    assert _types(decision) == [(T.TRANSIENT_FAILURE, 452, 2), (T.ADMIN_BOUNCE, 551, 3)]
    assert decision.due is None


def test_an_operator_bounce_does_not_undo_a_delivery() -> None:
    decision = decide(
        disposition.accepted(Reply(250, None, "ok")),
        attempts=0,
        created=NOW,
        config=CONFIG,
        now=NOW,
        doomed=admin_bounce("stop"),
    )
    assert _types(decision) == [(T.DELIVERY, 250, 0)]


def test_the_jitter_moves_the_next_attempt_within_its_window() -> None:
    def due(jitter: float) -> float:
        decision = decide(
            disposition.rejected(QUOTA),
            attempts=0,
            created=NOW,
            config=CONFIG,
            now=NOW,
            jitter=jitter,
        )
        assert decision.due is not None
        return decision.due - NOW

    assert due(0.0) == pytest.approx(60.0 - 1.5)  # window min(60/20, 60) = 3 s
    assert due(0.5) == pytest.approx(60.0)
    assert due(0.999999) == pytest.approx(61.5, abs=1e-4)


def test_rewrite_reports_a_failed_hook_and_keeps_the_reply() -> None:
    outcome = rewrite(QUOTA, HookAnswer(error="p.lua:2: boom"))
    assert outcome.reply == QUOTA
    assert not outcome.rewritten
    assert outcome.error == "p.lua:2: boom"
    assert outcome.disposition is T.TRANSIENT_FAILURE


# --- scheduling constraints (msg:set_scheduling) ---------------------------------------------

WINDOW = parse_schedule(
    {"dow": "Mon,Tue,Wed,Thu,Fri,Sat,Sun", "tz": "Etc/UTC", "start": "09:00:00", "end": "10:00:00"}
)
MONDAY_0930 = datetime.datetime(2024, 3, 4, 9, 30, tzinfo=datetime.UTC).timestamp()


def test_a_retry_outside_the_window_waits_for_the_next_start() -> None:
    decision = decide(
        disposition.rejected(QUOTA),
        attempts=0,
        created=MONDAY_0930,
        config=QueueConfig(retry_interval=3600.0, max_age=7 * 86400.0),
        now=MONDAY_0930,
        schedule=WINDOW,
    )
    tuesday_0900 = MONDAY_0930 + 86400 - 1800
    assert (_types(decision), decision.due) == ([(T.TRANSIENT_FAILURE, 452, 0)], tuesday_0900)


def test_the_own_expiry_replaces_max_age() -> None:
    own = parse_schedule({"expires": "2024-03-04T10:00:00Z"})
    config = QueueConfig(retry_interval=600.0, max_age=60.0)  # max_age alone would expire it
    kept = decide(
        disposition.rejected(QUOTA),
        attempts=0,
        created=MONDAY_0930,
        config=config,
        now=MONDAY_0930,
        schedule=own,
    )
    assert kept.due == MONDAY_0930 + 600
    ended = decide(
        disposition.rejected(QUOTA),
        attempts=2,
        created=MONDAY_0930,
        config=config,
        now=MONDAY_0930,
        schedule=own,
    )
    assert ended.due is None
    assert _types(ended) == [(T.TRANSIENT_FAILURE, 452, 2), (T.EXPIRATION, 551, 3)]
    assert ended.records[-1].reply.content == (
        "Next delivery time would be at 2024-03-04T10:10:00Z which exceeds the expiry time "
        "2024-03-04T10:00:00Z configured via set_scheduling"
    )


def test_waiting_past_the_own_expiry_and_out_of_the_window() -> None:
    own = parse_schedule({"expires": "2024-03-04T10:00:00Z", **schedule_json(WINDOW)})
    expired = decide(EXPIRED, attempts=1, created=0.0, config=CONFIG, now=MONDAY_0930, schedule=own)
    assert expired.records[-1].reply.content == (
        "Message reached the expiry time 2024-03-04T10:00:00Z configured via set_scheduling"
    )
    later = decide(
        disposition.OUT_OF_SCHEDULE,
        attempts=1,
        created=0.0,
        config=CONFIG,
        now=MONDAY_0930 + 3600,
        schedule=own,
    )
    assert (later.records, later.attempts, later.due) == ((), 1, MONDAY_0930 + 86400 - 1800)
