"""The values a spool file's fields may hold: their JSON types and sane ranges, one check each.

Every header of `data/<id>`, every `meta/<id>.json` and every drop file goes through these
before it becomes a SpooledMessage or a Submission, and every message goes through them
before it is written, so the engine never meets a NaN, a number where a string belongs, or a
time no date can name. A check returns the value with its Python type, or raises ValueError
saying what is wrong (entry.py turns that into SpoolEntryCorrupt, or SpoolError on writing).

The rules (docs/reception.md, "The spool on disk"):
- a time (`created`, `due`): a finite JSON number, not `true`/`false`, from 0 (1970-01-01)
  to TIME_MAX (9999-12-31 23:59:59 UTC), the range a log record's `created_time` can state;
- `attempts`: an integer from 0 to ATTEMPTS_MAX; `size`: an integer from 0; `crc32`: an
  integer below 2**32 (JSON integers only: `2.0` and `true` are not counts);
- a text (`id`, `reception_protocol`, `last_response`): a string that is UTF-8 (JSON's
  `\\ud800` escapes can carry lone surrogates, which no log line or SMTP command can);
- `sender`: the null sender or a mailbox, `recipient`: a mailbox, by the one address syntax
  of every way mail comes in (core/address.py);
- `meta`: a JSON object holding any JSON values (core.meta: nested at most 32 levels; texts
  as above, numbers finite), whose reserved keys `queue`, `tenant`, `campaign`,
  `routing_domain` are strings or null (they name the message's queue);
- `schedule`: the scheduling constraints of `msg:set_scheduling` in KumoMTA's JSON form
  (core.schedule).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kumoclient.core.address import check_mailbox, check_sender
from kumoclient.core.meta import check_meta, kind
from kumoclient.core.schedule import parse_schedule
from kumoclient.errors import AddressError
from kumoclient.records import Schedule

TIME_MAX = 253_402_300_799  # 9999-12-31T23:59:59Z: the last second datetime can format
ATTEMPTS_MAX = 2**31 - 1  # a retry a second for 68 years; log records need a 64-bit integer
CRC_MAX = 2**32 - 1


def time(value: Any, name: str) -> float:
    """A time in Unix seconds from 0 to TIME_MAX."""
    kind_of = type(value)  # exactly: bool is an int subclass, and true is not a time
    if kind_of is not float and kind_of is not int:
        raise ValueError(f"{name} is {kind(value)}, not a number")
    if not 0 <= value <= TIME_MAX:  # NaN fails every comparison, infinities this one
        raise ValueError(f"{name} {value!r:.24} is not a time from 1970 to 9999")
    return float(value)


def count(value: Any, name: str, maximum: int | None = None) -> int:
    """A JSON integer from 0 to `maximum` (no bound when None)."""
    if type(value) is not int:  # exactly: bool is an int subclass
        raise ValueError(f"{name} is {kind(value)}, not an integer")
    if value < 0 or (maximum is not None and value > maximum):
        raise ValueError(f"{name} {value!r:.24} is out of range")
    return value


def text(value: Any, name: str) -> str:
    """A string that can be written as UTF-8."""
    if not isinstance(value, str):
        raise ValueError(f"{name} is {kind(value)}, not a string")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"{name} holds a lone surrogate (not UTF-8)") from None
    return value


def optional_text(value: Any, name: str) -> str | None:
    """A text, or None (JSON null)."""
    return None if value is None else text(value, name)


def sender(value: Any) -> str:
    """The null sender `""` or a mailbox."""
    return _address(check_sender, value, "sender")


def recipient(value: Any) -> str:
    """A mailbox."""
    return _address(check_mailbox, value, "recipient")


def meta(value: Any) -> dict[str, Any]:
    """A message's metadata: a JSON object of any JSON values, its reserved keys strings or
    null (core.meta; a new dict, never `value` itself)."""
    return check_meta(value)


def schedule(value: Any) -> Schedule | None:
    """Scheduling constraints in KumoMTA's JSON form (null: none)."""
    if value is None:
        return None
    return parse_schedule(value)


__all__ = ["kind"]  # entry.py names wrong values as this module does


def _address(check: Callable[[str], str], value: Any, name: str) -> str:
    try:
        return check(text(value, name))
    except AddressError as exc:  # its text quotes the address: a reason names no values
        raise ValueError(f"{name} is not an address: {exc.reason}") from None
