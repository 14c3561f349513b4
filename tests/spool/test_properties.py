"""Property-based tests (hypothesis) of issue 15, item 2: arbitrary JSON in any field.

Every field of a `data/<id>` header, of a `meta/<id>.json` and of an `incoming/` drop file
gets arbitrary JSON (NaN, infinities, huge and negative numbers, booleans, nulls, nested
arrays and objects, lone surrogates, addresses with CR LF) or a near-valid value, or is left
out; the files are real files of a real spool. Properties: loading raises nothing but
SpoolEntryCorrupt, and the daemon's scan (`load_listed`) never raises but quarantines with a
reason; a message that loads has sane typed values (fields.py) and the engine can schedule
it: a queue name, a log record the log writer encodes, a retry delay, and the engine's real
Scheduler releasing it at its due time. And what `store` accepts, `load` returns unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from kumoclient.core import msgid
from kumoclient.core.address import check_mailbox, check_sender
from kumoclient.core.queue_name import RESERVED, parse_queue_name, queue_name_for
from kumoclient.core.retry import next_delay
from kumoclient.core.schedule import parse_schedule
from kumoclient.engine.queues import Item, Scheduler
from kumoclient.logs import encode_record
from kumoclient.records import LogRecord, RecordType, Schedule, SpooledMessage
from kumoclient.spool import Spool, SpoolEntryCorrupt, SpoolError, Submission
from kumoclient.spool.fields import ATTEMPTS_MAX, TIME_MAX
from tests.spool.common import CONTENT, write_header

SETTINGS = settings(
    max_examples=500,
    deadline=None,  # real files and an event loop per example; the suite runs under load
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # one spool, new ids each
)
ABSENT = object()  # the field is left out
RIGHT = object()  # the value that matches the file (its id, size, CRC)

NASTY_TEXT = st.sampled_from(
    ["", "x", "\ud800", "a\ud800@example.com", "a@b.com\r\nRCPT TO:<c@d.com>", "a@", "@b", "\0"]
)
NASTY_NUMBER = st.sampled_from(
    [math.nan, math.inf, -math.inf, -1, -0.5, TIME_MAX + 1, 1e300, 2**63, True, False, 2.0]
)
TEXT = st.one_of(NASTY_TEXT, st.text(st.characters(exclude_categories=()), max_size=12))
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=6,
)
ADDRESS = st.sampled_from(["b@example.net", "b@[192.0.2.1]", '"a b"@example.net', "ü@bücher.de"])
# meta holds any JSON; its reserved keys (core.queue_name) must be strings or null
META = st.dictionaries(TEXT | st.sampled_from(RESERVED), JSON, max_size=4)
SCHEDULE = st.none() | st.sampled_from(
    [
        {"first_attempt": "2030-01-02T03:04:05+01:00"},
        {"expires": "2030-01-02T03:04:05Z", "dow": "Mon,sunday", "tz": "Etc/UTC"},
        {"dow": "Mon", "tz": "America/Phoenix", "start": "09:00:00", "end": "17:00:00"},
        {"dow": "Mon", "tz": "Nowhere/Else", "start": "09:00:00", "end": "17:00:00"},
        {"dow": "Mon", "tz": "Etc/UTC", "start": "19:00:00", "end": "17:00:00"},
    ]
)
TIME = st.one_of(st.floats(0, TIME_MAX), st.integers(0, TIME_MAX))


# a field's value: arbitrary JSON (the values that once got through more often), or left out
BAD = st.one_of(NASTY_NUMBER, NASTY_TEXT, JSON, st.just(ABSENT))


@st.composite
def damaged(draw: st.DrawFn, valid: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """Values for the fields of one file: valid ones, with up to three (often none) replaced
    by arbitrary JSON or left out."""
    chosen = draw(st.sets(st.sampled_from(sorted(valid)), max_size=3))
    return {name: draw(BAD if name in chosen else value) for name, value in valid.items()}


HEADER = {
    "sender": st.sampled_from(["", "a@example.com"]),
    "recipient": ADDRESS,
    "meta": META,
    "created": TIME,
    "reception_protocol": TEXT,
    "due": TIME,
    "schedule": SCHEDULE,
    "id": st.just(RIGHT),
    "size": st.just(RIGHT),
    "crc32": st.just(RIGHT),
}
STATE = {
    "attempts": st.integers(0, ATTEMPTS_MAX),
    "due": TIME,
    "last_response": st.none() | TEXT,
    "meta": META,
}
DROP = {
    "sender": st.sampled_from(["", "a@example.com"]),
    "recipients": st.lists(ADDRESS, min_size=1, max_size=3),
    "meta": st.none() | st.lists(META, min_size=1, max_size=1),
    "created": TIME,
    "reception_protocol": TEXT,
}
_ids = itertools.count(1)


def new_id() -> str:
    return msgid.message_id(msgid.submission_base(1_700_000_000.0, next(_ids)), 0)


def present(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not ABSENT}


def assert_sane(message: SpooledMessage) -> None:
    """Every value has its type and sane range (fields.py), as the engine expects them."""
    assert check_sender(message.sender) == message.sender
    assert check_mailbox(message.recipient) == message.recipient
    assert isinstance(message.meta, dict)
    assert_json(message.meta)
    for key in RESERVED:
        assert message.meta.get(key) is None or isinstance(message.meta[key], str)
    assert message.schedule is None or isinstance(message.schedule, Schedule)
    for moment in (message.created, message.due):
        assert type(moment) is float
        assert math.isfinite(moment)
        assert 0 <= moment <= TIME_MAX
    assert type(message.size) is int
    assert message.size >= 0
    assert type(message.attempts) is int
    assert 0 <= message.attempts <= ATTEMPTS_MAX
    assert message.last_response is None or isinstance(message.last_response, str)
    assert isinstance(message.reception_protocol, str)
    (message.id + message.reception_protocol + (message.last_response or "")).encode()


def assert_json(value: Any) -> None:
    """A JSON value with UTF-8 texts and finite numbers (what json.dumps writes as JSON)."""
    if isinstance(value, str):
        value.encode()
    elif isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, list):
        for item in value:
            assert_json(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str)
            key.encode()
            assert_json(item)
    else:
        assert value is None or isinstance(value, bool | int)


def assert_schedulable(message: SpooledMessage) -> None:
    """What the engine does with a loaded message: name its queue, write its Reception
    record, compute a retry, and release it from the real Scheduler at its due time."""
    queue = queue_name_for(message.recipient, message.meta)
    record = LogRecord(
        RecordType.RECEPTION,
        message.id,
        message.sender,
        message.recipient,
        queue,
        when=message.due,
        created=message.created,
        size=message.size,
        num_attempts=message.attempts,
        meta=message.meta,
        reception_protocol=message.reception_protocol,
    )
    json.loads(encode_record(record))
    assert math.isfinite(next_delay(message.attempts, 60.0, None))
    item = Item(message, queue, parse_queue_name(queue))
    assert asyncio.run(released_at_due_time(item)) == [item]


async def released_at_due_time(item: Item) -> list[Item]:
    """The items the engine's Scheduler hands on when its clock reads `item`'s due time."""
    released: list[Item] = []
    due = asyncio.Event()
    scheduler = Scheduler(lambda it: (released.append(it), due.set()), lambda: item.message.due)
    scheduler.add(item)
    running = asyncio.create_task(scheduler.run())
    await asyncio.wait_for(due.wait(), 10)
    scheduler.stop()
    await running
    return released


def load_or_quarantine(spool: Spool, message_id: str) -> SpooledMessage | None:
    """`load` (only SpoolEntryCorrupt may come out), then the daemon's scan of the same
    entry: the same message, or quarantined with a reason."""
    try:
        expected: SpooledMessage | None = spool.load(message_id)
    except SpoolEntryCorrupt:
        expected = None
    assert message_id in spool.listing()  # as the daemon's scan: list, then load
    loaded = [m for m, _ in spool.load_listed([message_id])]
    event("quarantined" if expected is None else "loaded")  # --hypothesis-show-statistics
    if expected is None:
        assert loaded == []
        reason = (spool.quarantine / f"{message_id}.reason").read_text()
        assert reason.startswith("SpoolEntryCorrupt: ")
        assert not (spool.data / message_id).exists()
        return None
    assert loaded == [expected]
    assert_sane(expected)
    assert_schedulable(expected)
    return expected


@pytest.fixture
def files(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool")


@SETTINGS
@given(values=damaged(HEADER))
def test_any_json_in_any_header_field_loads_sane_or_is_quarantined(
    files: Spool, values: dict[str, Any]
) -> None:
    message_id = new_id()
    right = {"id": message_id, "size": len(CONTENT), "crc32": zlib.crc32(CONTENT)}
    header = present({k: right[k] if v is RIGHT else v for k, v in values.items()})
    write_header(files.data / message_id, header, CONTENT)
    load_or_quarantine(files, message_id)


@SETTINGS
@given(values=damaged(STATE), whole=st.none() | JSON)
def test_any_json_in_any_metadata_field_loads_sane_or_is_quarantined(
    files: Spool, values: dict[str, Any], whole: Any
) -> None:
    message_id = new_id()
    header = {"id": message_id, "sender": "a@example.com", "recipient": "b@example.net"}
    write_header(files.data / message_id, {**header, "size": len(CONTENT)}, CONTENT)
    state = present(values) if whole is None else whole  # or the whole file any JSON
    (files.meta / f"{message_id}.json").write_text(json.dumps(state))
    load_or_quarantine(files, message_id)


@SETTINGS
@given(values=damaged(DROP))
def test_any_json_in_any_drop_file_field_is_taken_sane_or_refused_as_corrupt(
    files: Spool, values: dict[str, Any]
) -> None:
    base = msgid.submission_base(1_700_000_000.0, next(_ids))
    path = files.incoming / f"{base}.msg"
    path.write_bytes(json.dumps(present(values)).encode() + b"\n" + CONTENT)
    try:
        submission, created = asyncio.run(files.read_drop(path))
    except SpoolEntryCorrupt:
        return
    messages = files.prepare(submission, now=created)
    asyncio.run(store(files, messages))  # what the pick-up stores
    for message in messages:
        assert load_or_quarantine(files, message.id) == message


async def store(files: Spool, messages: list[SpooledMessage]) -> None:
    """Store as the daemon does (a started spool, group commit), in `files`' directory."""
    spool = Spool(files.root)
    await spool.start()
    try:
        await spool.store(messages, CONTENT, fresh=False)
    finally:
        await spool.close()


@SETTINGS
@given(
    values=damaged(
        {
            "sender": st.sampled_from(["", "a@example.com"]),
            "recipient": ADDRESS,
            "meta": META,
            "created": TIME,
            "reception_protocol": TEXT,
        }
    ),
    schedule=SCHEDULE,
    later=st.floats(0, 1e6),
)
def test_what_store_accepts_loads_unchanged(
    files: Spool, values: dict[str, Any], schedule: dict[str, str] | None, later: float
) -> None:
    (message,) = files.prepare(Submission("a@example.com", ("b@example.net",), CONTENT))
    changes = present(values)
    try:
        changes["schedule"] = None if schedule is None else parse_schedule(schedule)
    except ValueError:
        return  # not a schedule a message can have
    created = changes.get("created", message.created)
    due = created + later if isinstance(created, int | float) else created
    message = replace(message, **changes, due=due)
    try:
        asyncio.run(store(files, [message]))
    except SpoolError:
        assert message.id not in files.ids()
        return
    assert load_or_quarantine(files, message.id) == message
