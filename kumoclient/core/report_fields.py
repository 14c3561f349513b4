"""What both inbound report formats share (RFC 3464 DSNs, RFC 5965 ARF): the parts of a
`multipart/report` with their bodies as sent, blocks of `Name: value` fields, dates, and the JSON
forms KumoMTA gives their values.

Rules for every field block: names are compared in lower case; a value is unfolded (a line break
and the white space after it become one space), trimmed, and its RFC 2047 encoded words decoded;
a line that is neither a field nor the continuation of one makes the report malformed
(ReportError); bytes that are not UTF-8 become U+FFFD. Dates take every RFC 5322 form, obsolete
ones included (`UTC`, `EDT`, two-digit years); a date that cannot be read is None, never an error.
"""

from __future__ import annotations

import contextlib
import datetime
import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value, parsedate_to_datetime

from kumoclient.errors import ReportError
from kumoclient.records import RemoteMta

# the parts that carry the reported message, whole or its header block (RFC 6522, RFC 6533)
ORIGINAL_TYPES = frozenset(
    {"message/rfc822", "text/rfc822-headers", "message/global", "message/global-headers"}
)

_FIELD = re.compile(r"([!-9;-~]+)[ \t]*:(.*)")
_FOLD = re.compile(r"\n[ \t]+")


class _Part(Message):
    """A MIME part whose `message/*` body stays as it was sent.

    Python's parser turns the body of a `message/*` part into messages of its own (a
    `message/delivery-status` one into header blocks), and writing those back does not give the
    bytes that came. The parser learns a part's type from `get_content_type`: a `message/*` part
    answers `application/octet-stream` here, so its body stays bytes. `content_type()` gives the
    real type.
    """

    def get_content_type(self) -> str:
        real = Message.get_content_type(self)
        return "application/octet-stream" if real.startswith("message/") else real


def content_type(part: Message) -> str:
    """The part's real media type, lower case (`text/plain` when it has none)."""
    return Message.get_content_type(part)


def report_parts(data: bytes) -> tuple[str, list[Message]] | None:
    """The report type (lower case, `""` when the header has none) and the child parts of a
    `multipart/report` message; None when the message is anything else."""
    message = BytesParser(_class=_Part, policy=compat32).parsebytes(data)
    if content_type(message) != "multipart/report":
        return None
    param = message.get_param("report-type")
    report_type = collapse_rfc2231_value(param) if param is not None and param != "" else ""
    payload = message.get_payload() if message.is_multipart() else []
    parts = [part for part in payload if isinstance(part, Message)]
    return str(report_type).strip().lower(), parts


def first_part(parts: list[Message], types: frozenset[str]) -> Message | None:
    """The first part of one of `types`."""
    return next((part for part in parts if content_type(part) in types), None)


def body(part: Message) -> bytes:
    """The part's body with its transfer encoding undone and LF line endings."""
    payload = part.get_payload(decode=True)
    return payload.replace(b"\r\n", b"\n") if isinstance(payload, bytes) else b""


def original_message(parts: list[Message]) -> bytes | None:
    """The reported message (or its header block) carried by the report: the last such part."""
    found = [part for part in parts if content_type(part) in ORIGINAL_TYPES]
    return body(found[-1]) if found else None


def field_blocks(data: bytes) -> list[list[str]]:
    """The lines of a status part's body in blocks, split at blank lines (a line of white space
    is blank)."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for raw in data.decode("utf-8", "replace").split("\n"):
        line = raw.rstrip("\r")
        if line.strip():
            current.append(line)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


class Fields:
    """One block of `Name: value` fields, taken out by name; what is left is the block's
    `extensions`. `report` names the report kind in errors."""

    def __init__(self, lines: list[str], report: str) -> None:
        self.report = report
        raw: dict[str, list[list[str]]] = {}  # name -> each occurrence's lines
        current: list[str] | None = None
        for line in lines:
            if line[:1] in (" ", "\t") and current is not None:
                current.append(line)
                continue
            match = _FIELD.fullmatch(line)
            if match is None:
                raise ReportError(report, f"not a field: {shown(line)}")
            current = [match[2]]
            raw.setdefault(match[1].lower(), []).append(current)
        self._values = {
            name: [_clean("\n".join(value)) for value in values] for name, values in raw.items()
        }

    def single(self, name: str) -> str | None:
        """The value of a field that may appear once; ReportError when it repeats."""
        values = self._values.pop(name, None)
        if values is None:
            return None
        if len(values) > 1:
            raise ReportError(self.report, "appears more than once", field=name)
        return values[0]

    def required(self, name: str) -> str:
        """The value of a field that must appear once."""
        value = self.single(name)
        if value is None:
            raise ReportError(self.report, "missing", field=name)
        return value

    def every(self, name: str) -> tuple[str, ...]:
        """Every value of a field that may repeat."""
        return tuple(self._values.pop(name, ()))

    def date(self, name: str) -> float | None:
        """A date field in Unix seconds; None when absent or not a date."""
        value = self.single(name)
        return None if value is None else parse_date(value)

    def typed(self, name: str) -> tuple[str, str] | None:
        """A `type; value` field (`dns; mx.example.com`), both halves trimmed."""
        value = self.single(name)
        if value is None:
            return None
        kind, semicolon, text = value.partition(";")
        if not semicolon:
            expected = f"expected 'type; value', got {shown(value)}"
            raise ReportError(self.report, expected, field=name)
        return kind.strip(), text.strip()

    def mta(self, name: str) -> RemoteMta | None:
        """A `name-type; name` field naming an MTA."""
        pair = self.typed(name)
        return None if pair is None else RemoteMta(*pair)

    def rest(self) -> dict[str, tuple[str, ...]]:
        """The fields not taken, by lower-case name in name order."""
        return {name: tuple(self._values[name]) for name in sorted(self._values)}


def _clean(raw: str) -> str:
    text = _FOLD.sub(" ", raw).strip()
    if "=?" in text:
        # not valid encoded words: the text stays as written
        with contextlib.suppress(HeaderParseError, LookupError, UnicodeError, ValueError):
            text = str(make_header(decode_header(text)))
    return text


def shown(text: str, limit: int = 60) -> str:
    """A value quoted for an error message, cut at `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def parse_date(text: str) -> float | None:
    """Unix seconds of an RFC 5322 date; None when it is not one. A zone of `-0000` or none
    is UTC."""
    try:
        when = parsedate_to_datetime(text)
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def envelope_address(value: str) -> str:
    """An address as a report field gives it, without its angle brackets (`<>` is `""`)."""
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text


# --- JSON forms (KumoMTA's) ----------------------------------------------------------------


def date_json(when: float | None) -> str | None:
    """RFC 3339 in UTC: `2023-12-14T16:16:15Z`, with microseconds only when there are some."""
    if when is None:
        return None
    stamp = datetime.datetime.fromtimestamp(when, datetime.UTC)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{stamp.microsecond:06d}Z" if stamp.microsecond else f"{text}Z"


def bytes_json(data: bytes | None) -> str | list[int] | None:
    """Text when the bytes are UTF-8, else the list of byte values."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return list(data)


def mta_json(mta: RemoteMta | None) -> dict[str, str] | None:
    """`{mta_type, name}`."""
    return None if mta is None else {"mta_type": mta.mta_type, "name": mta.name}
