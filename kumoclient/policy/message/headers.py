"""The header block of an RFC 5322 message, as bytes: find the fields, read their values, add,
remove and encode them, leaving every other byte of the message as it was.

Rules (KumoMTA's):
- the header block ends at the first empty line; the rest is the body;
- a field is `name: value` on one line, with continuation lines starting with a space or a
  tab; a line of the block without a colon is a field with an empty value (the conformance
  issue MISSING_COLON_VALUE), a name ending in white space is NAME_ENDS_WITH_SPACE;
- names match case-insensitively;
- a value is read unfolded, each run of white space as one space, leading and trailing white
  space removed, RFC 2047 encoded words decoded; a value that cannot be decoded is returned
  unfolded as it is;
- a new field is written `name: value` with the message's own line ending (CRLF unless the
  message uses bare LF); `encode=true` wraps an ASCII value at white space near 75 columns
  (regardless of white space at 900) and writes a non-ASCII one as RFC 2047 `Q` encoded
  words of UTF-8;
- an edit keeps the bytes of every field it does not touch.
"""

from __future__ import annotations

import email.header
import re
from collections.abc import Callable
from dataclasses import dataclass

SOFT_WIDTH = 75
HARD_WIDTH = 900
_QP_LIMIT = 72 - len("=?UTF-8?q?") - len("?=")
_LINE = re.compile(rb"[^\n]*(?:\n|$)")
_BLANK = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True, slots=True)
class Field:
    """One header field: its name as written, its raw value (after the colon, folded lines
    and their line ends included, the line end of its last line excluded) and where its bytes
    are (`start` to `end`, line end included)."""

    name: str
    raw: bytes
    start: int
    end: int
    colon: bool = True  # False: the line had no colon (MISSING_COLON_VALUE)

    def matches(self, name: str) -> bool:
        """True when this field has `name` (case-insensitive)."""
        return self.name.lower() == name.lower()

    @property
    def spaced_name(self) -> bool:
        """True when the name ends with white space before its colon (NAME_ENDS_WITH_SPACE)."""
        return self.name != self.name.rstrip(" \t")

    @property
    def value(self) -> str:
        """The value, unfolded and decoded (see the module's rules)."""
        return decode_value(self.raw)


def split(data: bytes) -> tuple[list[Field], int]:
    """The fields of the header block and the offset where the body starts (after the empty
    line; the length of `data` when there is none)."""
    fields: list[Field] = []
    offset, size = 0, len(data)
    start = -1  # where the field being read starts
    while offset < size:
        match = _LINE.match(data, offset)
        assert match is not None  # the pattern matches the empty string too
        end = match.end()
        text = match.group().rstrip(b"\r\n")
        if not text:  # the empty line: the body follows
            if start >= 0:
                fields.append(_field(data, start, offset))
            return fields, end
        if start < 0 or text[:1] not in (b" ", b"\t"):
            if start >= 0:
                fields.append(_field(data, start, offset))
            start = offset
        offset = end
    if start >= 0:
        fields.append(_field(data, start, size))
    return fields, size


def _field(data: bytes, start: int, end: int) -> Field:
    name, colon, value = data[start:end].rstrip(b"\r\n").partition(b":")
    return Field(name.decode("utf-8", "replace"), value, start, end, bool(colon))


def body_offset(data: bytes) -> int:
    """Where the body starts (see `split`)."""
    return split(data)[1]


def decode_value(raw: bytes) -> str:
    """A raw value unfolded, RFC 2047 decoded and trimmed (raw text when it cannot be)."""
    text = " ".join(raw.decode("utf-8", "replace").split())
    if "=?" not in text:
        return text
    try:
        return str(email.header.make_header(email.header.decode_header(text)))
    except (LookupError, ValueError, UnicodeError, email.errors.HeaderParseError):
        return text


def line_ending(data: bytes) -> bytes:
    """The message's line ending: LF when its first line ends with a bare LF, else CRLF."""
    first = data.find(b"\n")
    return b"\n" if first > 0 and data[first - 1 : first] != b"\r" else b"\r\n"


def field_bytes(name: str, value: str | bytes, ending: bytes = b"\r\n") -> bytes:
    """`name: value` and a line ending (a value ending with a line end gets no other)."""
    raw = value.encode() if isinstance(value, str) else value
    if ending == b"\n":
        raw = raw.replace(b"\r\n", b"\n")
    line = name.encode() + b": " + raw
    return line if line.endswith(b"\n") else line + ending


def prepend(data: bytes, name: str, value: str | bytes) -> bytes:
    """`data` with a new first field."""
    return field_bytes(name, value, line_ending(data)) + data


def append(data: bytes, name: str, value: str | bytes) -> bytes:
    """`data` with a new last field of the header block."""
    fields, _ = split(data)
    end = fields[-1].end if fields else 0
    ending = line_ending(data)
    head = data[:end]
    if head and not head.endswith(b"\n"):
        head += ending
    return head + field_bytes(name, value, ending) + data[end:]


def retain(data: bytes, keep: Callable[[int, Field], bool]) -> bytes:
    """`data` without the fields `keep(index, field)` refuses (their bytes cut out)."""
    fields, _ = split(data)
    dropped = [f for i, f in enumerate(fields) if not keep(i, f)]
    if not dropped:
        return data
    parts: list[bytes] = []
    offset = 0
    for field in dropped:
        parts.append(data[offset : field.start])
        offset = field.end
    parts.append(data[offset:])
    return b"".join(parts)


def remove_named(data: bytes, name: str) -> bytes:
    """`data` without any field named `name`."""
    return retain(data, lambda _, field: not field.matches(name))


def encode_value(value: str) -> str:
    """A value as a new header carries it with `encode=true` (see the module's rules)."""
    if value.isascii():
        return wrap(value)
    return q_encode(value)


def wrap(value: str, soft: int = SOFT_WIDTH, hard: int = HARD_WIDTH) -> str:
    """Words joined by single spaces, a new line (CRLF and a tab) before a word that would
    take a line past `soft` columns, and a word longer than `hard` cut into pieces."""
    lines: list[str] = []
    line = ""
    for word in value.split():
        if len(line) + len(word) < soft:
            line = f"{line} {word}" if line else word
            continue
        if line:
            lines.append(line)
            line = ""
        pieces = [word[at : at + hard] for at in range(0, len(word), hard)]
        lines.extend(pieces[:-1])
        line = pieces[-1]
    if line:
        lines.append(line)
    return "\r\n\t".join(lines)


def q_encode(value: str) -> str:
    """RFC 2047 `Q` encoded words of UTF-8, each line at most 72 columns."""
    words: list[str] = []
    word = ""
    for char in value:
        if char == " ":
            piece = "_"
        elif _printable(char) and char not in "?=_":
            piece = char
        else:
            piece = "".join(f"={byte:02X}" for byte in char.encode())
        if len(word) + len(piece) > _QP_LIMIT:
            words.append(word)
            word = ""
        word += piece
    if word:
        words.append(word)
    return "\r\n\t".join(f"=?UTF-8?q?{word}?=" for word in words)


def _printable(char: str) -> bool:
    return 0x21 <= ord(char) <= 0x7E
