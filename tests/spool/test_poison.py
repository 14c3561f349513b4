"""Poison entries (issue 15, item 2): a malformed value in any field is quarantined at load.

Each case writes one real entry, metadata file or drop file with one bad value beside a good
message, and checks that loading quarantines exactly the bad one with a reason naming the
field, while the good one loads. The sane ranges are kumoclient/spool/fields.py's.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from kumoclient.spool import Spool, SpoolEntryCorrupt, SpoolError, Submission
from kumoclient.spool.fields import ATTEMPTS_MAX, TIME_MAX
from tests.spool.common import CONTENT, rewrite_header, stored, submission

NAN, INF = float("nan"), float("inf")
RESERVED = "must be a string (it names the message's queue), not"  # core.queue_name
DEEP: object = "x"
for _ in range(40):
    DEEP = [DEEP]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"recipient": 12345}, "recipient is an integer, not a string"),
        ({"recipient": "nobody"}, "recipient is not an address: expected local-part@domain"),
        ({"recipient": "a@b.com\r\nRCPT TO:<c@d.com>"}, "recipient is not an address"),
        ({"recipient": "x\ud800@example.com"}, "recipient holds a lone surrogate"),
        ({"sender": None}, "sender is null, not a string"),
        ({"sender": ["a@x.com"]}, "sender is an array"),
        ({"created": NAN}, "created nan is not a time"),
        ({"created": INF}, "created inf is not a time"),
        ({"created": -INF}, "created -inf is not a time"),
        ({"created": -1}, "created -1 is not a time"),
        ({"created": TIME_MAX + 1}, "is not a time from 1970 to 9999"),
        ({"created": 1e300}, "is not a time from 1970 to 9999"),
        ({"created": True}, "created is a boolean"),
        ({"created": "1796631161"}, "created is a string, not a number"),
        ({"size": True}, "size is a boolean, not an integer"),
        ({"size": 20.0}, "size is a number, not an integer"),
        ({"crc32": "abc"}, "crc32 is a string"),
        ({"crc32": -1}, "crc32 -1 is out of range"),
        ({"meta": None}, "meta is null, not an object"),
        ({"meta": {"tenant": 7}}, f"meta 'tenant' {RESERVED} an integer"),
        ({"meta": {"k": {"nested": NAN}}}, "meta 'k' holds a number that JSON cannot"),
        ({"meta": {"k": ["\ud800"]}}, "meta 'k' holds a lone surrogate"),
        ({"meta": {"k": DEEP}}, "meta 'k' is nested more than 32 levels deep"),
        ({"reception_protocol": 5}, "reception_protocol is an integer"),
        ({"id": 5}, "id is an integer"),
        ({"due": "soon"}, "due is a string, not a number"),
        ({"schedule": {"first_attempt": "tomorrow"}}, "first_attempt: 'tomorrow' is not an RFC"),
        (
            {"schedule": {"dow": "Mon", "tz": "Nowhere/Else", "start": "09:00", "end": "10:00"}},
            "tz: 'Nowhere/Else' is not an IANA time zone name",
        ),
        ({"schedule": {"dow": "Mon"}}, "tz, start, end are missing"),
        ({"schedule": "Mon"}, "expected a table of scheduling parameters"),
    ],
)
async def test_a_header_with_a_malformed_value_is_quarantined_naming_it(
    spool: Spool, changes: dict[str, object], reason: str
) -> None:
    good, bad = await stored(spool, "good@x.com", "bad@x.com")
    rewrite_header(spool.data / bad.id, **changes)
    with pytest.raises(SpoolEntryCorrupt, match="corrupt header"):
        spool.load(bad.id)
    assert [m.id for m in spool.enumerate()] == [good.id]
    assert reason in (spool.quarantine / f"{bad.id}.reason").read_text()
    assert spool.ids() == [good.id]


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"attempts": 1, "due": NAN}, "due nan is not a time"),
        ({"attempts": 1, "due": INF}, "due inf is not a time"),
        ({"attempts": 1, "due": -5.0}, "due -5.0 is not a time"),
        ({"attempts": 1, "due": 1e20}, "is not a time from 1970 to 9999"),
        ({"attempts": 1, "due": None}, "due is null, not a number"),
        ({"attempts": 2.7, "due": 0}, "attempts is a number, not an integer"),
        ({"attempts": True, "due": 0}, "attempts is a boolean"),
        ({"attempts": -1, "due": 0}, "attempts -1 is out of range"),
        ({"attempts": ATTEMPTS_MAX + 1, "due": 0}, "is out of range"),
        ({"attempts": 1, "due": 0, "last_response": 451}, "last_response is an integer"),
        ({"attempts": 1, "due": 0, "last_response": {"code": 451}}, "last_response is an obj"),
        ({"attempts": 1, "due": 0, "meta": {"tenant": 1.5}}, f"meta 'tenant' {RESERVED} a num"),
        ({"attempts": 1, "due": 0, "meta": ["tenant"]}, "meta is an array"),
        ({"attempts": 1, "due": 0, "meta": {"queue": False}}, "'queue' must be a string"),
    ],
)
async def test_a_metadata_file_with_a_malformed_value_is_quarantined_naming_it(
    spool: Spool, state: dict[str, object], reason: str
) -> None:
    good, bad = await stored(spool, "good@x.com", "bad@x.com")
    (spool.meta / f"{bad.id}.json").write_text(json.dumps(state))
    with pytest.raises(SpoolEntryCorrupt, match="corrupt metadata file"):
        spool.load(bad.id)
    assert [m.id for m in spool.enumerate()] == [good.id]
    assert reason in (spool.quarantine / f"{bad.id}.reason").read_text()
    assert (spool.quarantine / f"{bad.id}.json").exists()


async def test_values_at_the_edges_of_the_sane_ranges_load(spool: Spool) -> None:
    (message,) = await stored(spool, "a@x.com")
    rewrite_header(spool.data / message.id, created=0, sender="")
    state = {"attempts": ATTEMPTS_MAX, "due": TIME_MAX, "last_response": None, "meta": {}}
    (spool.meta / f"{message.id}.json").write_text(json.dumps(state))
    loaded = spool.load(message.id)
    assert (loaded.created, loaded.sender) == (0.0, "")
    assert (loaded.attempts, loaded.due) == (ATTEMPTS_MAX, float(TIME_MAX))
    assert isinstance(loaded.created, float)
    assert isinstance(loaded.due, float)


def _drop_with(spool: Spool, **changes: object) -> Path:
    spool.drop(submission("a@x.com", "b@x.com"))
    (path,) = spool.pending_drops()
    line, content = path.read_bytes().split(b"\n", 1)
    header = {**json.loads(line), **changes}
    path.write_bytes(json.dumps(header).encode() + b"\n" + content)
    return path


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"created": NAN}, "created nan is not a time"),
        ({"created": -INF}, "created -inf is not a time"),
        ({"created": "now"}, "created is a string"),
        ({"recipients": ["a@x.com", 12345]}, "recipient is an integer"),
        ({"recipients": "a@x.com"}, "recipients is a string, not an array"),
        ({"sender": 1}, "sender is an integer"),
        ({"meta": [{"tenant": 1}, {}]}, f"meta 'tenant' {RESERVED} an integer"),
        ({"meta": {"tenant": "t"}}, "meta does not match the recipients"),
        ({"reception_protocol": None}, "reception_protocol is null"),
    ],
)
async def test_a_drop_file_with_a_malformed_value_is_corrupt_naming_it(
    tmp_path: Path, changes: dict[str, object], reason: str
) -> None:
    spool = Spool(tmp_path / "spool")
    path = _drop_with(spool, **changes)
    with pytest.raises(SpoolEntryCorrupt, match="corrupt incoming file") as raised:
        await spool.read_drop(path)
    assert reason in str(raised.value)


async def test_a_message_that_would_be_quarantined_is_refused_before_it_is_written(
    spool: Spool,
) -> None:
    """What the spool writes it can read back: a library caller's recipient that is not a
    mailbox is refused on store, not acknowledged and then quarantined at the next start."""
    (bad,) = spool.prepare(Submission("s@x.com", ("nobody",), CONTENT))
    with pytest.raises(SpoolError, match="recipient is not an address"):
        await spool.store([bad], CONTENT)
    (message,) = spool.prepare(submission("a@x.com"))
    with pytest.raises(SpoolError, match="created nan is not a time"):
        await spool.store([replace(message, created=NAN)], CONTENT)
    assert spool.ids() == []
    assert list(spool.data.iterdir()) == []
