"""`msg:set_scheduling`, `msg:import_scheduling_header`, `msg:set_due` through a real policy
runtime: the examples of KumoMTA's pages, what they return, what the view then holds."""

from __future__ import annotations

import datetime
import time

import pytest

from kumoclient.core.schedule import schedule_json
from kumoclient.errors import PolicyError
from tests.policy.conftest import LoadPolicy
from tests.policy.message_helpers import make_view, run

WORKING_HOURS = {"dow": "Mon,Wed", "tz": "America/Phoenix", "start": "09:00:00", "end": "17:00:00"}
PHOENIX = datetime.timezone(datetime.timedelta(hours=-7))


async def test_set_scheduling_returns_the_schedule_and_moves_the_due_time(
    load_policy: LoadPolicy,
) -> None:
    """The working-hours example of KumoMTA's `set_scheduling` page."""
    view, got = await run(
        load_policy,
        """
        OUT = msg:set_scheduling {
          dow = 'Mon,Wed',
          tz = 'America/Phoenix',
          start = '09:00:00',
          ['end'] = '17:00:00',
        }
        """,
    )
    assert got == WORKING_HOURS
    assert view.schedule is not None
    assert schedule_json(view.schedule) == WORKING_HOURS
    assert view.due is not None
    assert view.due >= time.time() - 5
    local = datetime.datetime.fromtimestamp(view.due, PHOENIX)
    assert local.strftime("%a") in ("Mon", "Wed")
    assert datetime.time(9) <= local.time() < datetime.time(17)


async def test_first_attempt_and_expiry_together(load_policy: LoadPolicy) -> None:
    """The 'both together' example with a valid RFC 3339 time (the page's own has a stray
    `:00` that KumoMTA refuses too), plus an expiry."""
    view, got = await run(
        load_policy,
        """
        OUT = msg:set_scheduling {
          first_attempt = '2099-03-01T17:00:00-08:00',
          expires = '2099-03-08T17:00:00Z',
          dow = 'Mon,Wed',
          tz = 'America/Phoenix',
          start = '09:00:00',
          ['end'] = '17:00:00',
        }
        """,
    )
    assert got == {
        **WORKING_HOURS,
        "first_attempt": "2099-03-01T17:00:00-08:00",
        "expires": "2099-03-08T17:00:00+00:00",
    }
    # 2099-03-01 is a Sunday: the first window after it is Monday 09:00 in Phoenix
    assert view.due == datetime.datetime(2099, 3, 2, 9, tzinfo=PHOENIX).timestamp()


async def test_the_pages_first_attempt_example_is_refused(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  msg:set_scheduling { first_attempt = '2023-03-01T17:00:00:00-08:00' }\nend)\n"
    )
    with pytest.raises(PolicyError, match=r"policy\.lua:2: set_scheduling: first_attempt: "):
        await runtime.message_event("smtp_server_message_received", make_view())


async def test_set_scheduling_nil_clears_it(load_policy: LoadPolicy) -> None:
    view, got = await run(
        load_policy,
        "msg:set_scheduling { first_attempt = '2099-01-01T00:00:00Z' }\n"
        "OUT = {msg:set_scheduling(nil) == nil}",
    )
    assert got == [True]
    assert view.schedule is None


async def test_import_scheduling_header(load_policy: LoadPolicy) -> None:
    """The example of KumoMTA's `import_scheduling_header` page: parse, apply, remove."""
    content = (
        b'X-Schedule: {"dow":"Mon,Wed","tz":"America/Phoenix","start":"09:00:00",'
        b'"end":"17:00:00"}\r\nSubject: hello\r\n\r\nThis message should only be delivered '
        b"during working hours\r\nin Phoenix on Mondays or Wednesdays.\r\n"
    )
    view, got = await run(
        load_policy,
        "OUT = {msg:import_scheduling_header('X-Schedule', true), "
        "msg:import_scheduling_header('X-Absent', true) == nil}",
        make_view(content),
    )
    assert got == [WORKING_HOURS, True]
    assert view.schedule is not None
    assert view.content.startswith(b"Subject: hello\r\n\r\n")


async def test_an_invalid_scheduling_header_is_an_error(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  msg:import_scheduling_header('X-Schedule', false)\nend)\n"
    )
    for value in (b"not json", b'{"dow":"Mon"}'):
        with pytest.raises(PolicyError, match=r"policy\.lua:2: "):
            await runtime.message_event(
                "smtp_server_message_received",
                make_view(b"X-Schedule: " + value + b"\r\n\r\nx\r\n"),
            )


async def test_set_due(load_policy: LoadPolicy) -> None:
    """The example of KumoMTA's `set_due` page; nil is as soon as possible; with a schedule
    the time is moved into it."""
    view, got = await run(
        load_policy,
        """
        local set = msg:set_due("2024-03-08T17:51:42.481711Z")
        local cleared = msg:set_due(nil)
        msg:set_scheduling { first_attempt = '2099-01-01T00:00:00Z' }
        local moved = msg:set_due('2030-01-01T00:00:00+01:00')
        OUT = {set, cleared == nil, moved}
        """,
    )
    assert got == ["2024-03-08T17:51:42.481711Z", True, "2099-01-01T00:00:00Z"]
    assert view.due == datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC).timestamp()
