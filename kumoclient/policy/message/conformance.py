"""RFC conformance of a message (`msg:check_fix_conformance`), the rebuild that fixes it
(`mimepart:rebuild`), and the simplified structure (`mimepart:get_simple_structure`).

Issues found (KumoMTA's labels and tests):
- MISSING_COLON_VALUE: a header line without a colon; NAME_ENDS_WITH_SPACE: `Subject :`;
- NON_CANONICAL_LINE_ENDINGS: a CR or LF that is not part of CRLF;
- LINE_TOO_LONG: a line of 77 characters or more before its CRLF (KumoMTA counts 79 bytes
  from one LF to the next);
- NEEDS_TRANSFER_ENCODING: a byte that is not ASCII, a body whose transfer encoding cannot be
  undone, or a text body its charset does not decode;
- MISSING_DATE_HEADER / MISSING_MESSAGE_ID_HEADER: absent or unreadable;
  MISSING_MIME_VERSION: absent or not `1.0` (top level only).

`check_fix`: issues in CHECKS (less those also in FIXES) are reported as
`Message has conformance issues: A|B`. Otherwise, issues in FIXES are fixed: unless all of
them are missing headers, the message is rebuilt from its parsed tree (each leaf's decoded
body written again as a new part, 8-bit text taken as UTF-8 lossily or through the charset
detector when `detect_encoding` is set; the original headers after the new part's own, each
re-encoded, Content-ID dropped, Content-Type/Disposition parameters merged, unreadable
structured headers dropped); then a missing Date (now), Mime-Version (`1.0`) and Message-ID
(`<id@sender domain>`) are set.
"""

from __future__ import annotations

import email.utils
import enum
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import charset_normalizer

from kumoclient.policy.message import structured
from kumoclient.policy.message.headers import Field, encode_value, field_bytes
from kumoclient.policy.message.mime import (
    Part,
    decode_text,
    new_binary,
    new_multipart,
    new_text,
)


class Issue(enum.IntFlag):
    """The conformance issues, in KumoMTA's order."""

    MISSING_COLON_VALUE = 1
    NON_CANONICAL_LINE_ENDINGS = 2
    NAME_ENDS_WITH_SPACE = 4
    LINE_TOO_LONG = 8
    NEEDS_TRANSFER_ENCODING = 16
    MISSING_DATE_HEADER = 32
    MISSING_MESSAGE_ID_HEADER = 64
    MISSING_MIME_VERSION = 128
    INVALID_MIME_HEADERS = 256


MISSING_HEADERS = (
    Issue.MISSING_DATE_HEADER | Issue.MISSING_MESSAGE_ID_HEADER | Issue.MISSING_MIME_VERSION
)
_LONE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
# the names a rebuilt header gets for the headers KumoMTA rebuilds by their type
_CANONICAL = (
    "Bcc", "Cc", "Comments", "Date", "From", "Message-ID", "Mime-Version", "References",
    "Reply-To", "Resent-Bcc", "Resent-Cc", "Resent-From", "Resent-Sender", "Resent-To",
    "Sender", "Subject", "To",
)  # fmt: skip
_CANONICAL_NAMES = {name.lower(): name for name in _CANONICAL}


@dataclass(frozen=True, slots=True)
class Settings:
    """The optional settings: guess the charset of 8-bit text (among `include`, minus
    `exclude`; charset_normalizer's names) instead of taking it as UTF-8 lossily."""

    detect_encoding: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, value: Any) -> Settings:
        """From the Lua table `{detect_encoding, include_encodings, exclude_encodings}`."""
        if value is None:
            return cls()
        if not isinstance(value, dict):
            raise ValueError("check_fix_conformance: settings must be a table")
        unknown = set(value) - {"detect_encoding", "include_encodings", "exclude_encodings"}
        if unknown:
            raise ValueError(f"check_fix_conformance: unknown setting {sorted(unknown)[0]}")
        return cls(
            bool(value.get("detect_encoding", False)),
            tuple(str(v) for v in value.get("include_encodings") or ()),
            tuple(str(v) for v in value.get("exclude_encodings") or ()),
        )


def parse_issues(text: str) -> Issue:
    """`'A|B'` as flags; ValueError naming an unknown label."""
    found = Issue(0)
    for name in text.split("|"):
        if not name:
            continue
        try:
            found |= Issue[name]
        except KeyError:
            possible = ", ".join(sorted(f"'{i.name}'" for i in Issue))
            raise ValueError(
                f"invalid MessageConformance flag '{name}', possible values are {possible}"
            ) from None
    return found


def issue_names(issues: Issue) -> str:
    """`A|B`, sorted by name (KumoMTA's text)."""
    return "|".join(sorted(i.name or "" for i in Issue if i in issues))


# --- finding issues --------------------------------------------------------------------------


def issues(data: bytes) -> Issue:
    """Every issue of a whole message (see the module's list)."""
    found = Issue(0)
    if not data.isascii():
        found |= Issue.NEEDS_TRANSFER_ENCODING
    if _LONE.search(data):
        found |= Issue.NON_CANONICAL_LINE_ENDINGS
    previous = 0
    for match in re.finditer(rb"\n", data):
        if match.start() - previous > 78:
            found |= Issue.LINE_TOO_LONG
            break
        previous = match.start()
    tree = Part.parse(data)
    for part in tree.walk():
        found |= _header_issues(part.fields()) | _body_issues(part)
    return found | _missing(tree)


def _header_issues(fields: list[Field]) -> Issue:
    found = Issue(0)
    for each in fields:
        if not each.colon:
            found |= Issue.MISSING_COLON_VALUE
        elif each.spaced_name:
            found |= Issue.NAME_ENDS_WITH_SPACE
    return found


def _body_issues(part: Part) -> Issue:
    if part.parts:
        return Issue(0)
    info = part.info()
    try:
        data = part.raw_decoded()
    except ValueError:
        return Issue.NEEDS_TRANSFER_ENCODING
    if info.is_text:
        try:
            data.decode(_codec_name(info.charset))
        except (LookupError, UnicodeDecodeError):
            return Issue.NEEDS_TRANSFER_ENCODING
    return Issue(0)


def _codec_name(charset: str) -> str:
    name = charset.strip().lower()
    return "ascii" if name in ("us-ascii", "ascii") else name


def _missing(tree: Part) -> Issue:
    found = Issue(0)
    date = tree.first("Date")
    try:
        if date is None or email.utils.parsedate_to_datetime(date.value) is None:
            found |= Issue.MISSING_DATE_HEADER
    except (TypeError, ValueError, IndexError):
        found |= Issue.MISSING_DATE_HEADER
    message_id = tree.first("Message-ID")
    try:
        if message_id is None:
            raise ValueError("absent")
        structured.message_id(message_id.raw)
    except ValueError:
        found |= Issue.MISSING_MESSAGE_ID_HEADER
    version = tree.first("Mime-Version")
    if version is None or version.value != "1.0":
        found |= Issue.MISSING_MIME_VERSION
    return found


# --- fixing ----------------------------------------------------------------------------------


def check_fix(
    data: bytes, check: Issue, fix: Issue, settings: Settings, message_id: str
) -> tuple[str | None, bytes | None]:
    """(the error text, None) when CHECKS finds issues; else (None, the fixed message or None
    when nothing was fixed)."""
    found = issues(data)
    problems = (check & ~fix) & found
    if problems:
        return f"Message has conformance issues: {issue_names(problems)}", None
    to_fix = fix & found
    if not to_fix:
        return None, None
    tree = Part.parse(data)
    if to_fix & ~MISSING_HEADERS:
        if to_fix & Issue.NEEDS_TRANSFER_ENCODING and settings.detect_encoding:
            guessed = detect(data, settings)
            if guessed is not None:
                tree = Part.parse(guessed.encode())
        tree = rebuild(tree, settings)
    if to_fix & Issue.MISSING_DATE_HEADER:
        _set(tree, "Date", email.utils.format_datetime(email.utils.localtime()))
    if to_fix & Issue.MISSING_MIME_VERSION:
        _set(tree, "Mime-Version", "1.0")
    if to_fix & Issue.MISSING_MESSAGE_ID_HEADER:
        _set(tree, "Message-ID", f"<{message_id}>")
    return None, tree.to_bytes()


def _set(part: Part, name: str, value: str) -> None:
    """Replace the first field named `name` in place, or add one at the end."""
    found = part.first(name)
    line = field_bytes(name, value)
    if found is None:
        part.add(name, value)
        return
    head = part.head
    part.set_head(head[: found.start] + line + head[found.end :])


def detect(data: bytes, settings: Settings) -> str | None:
    """`data` decoded with the charset the detector finds best, None when it finds none."""
    best = charset_normalizer.from_bytes(
        data,
        cp_isolation=list(settings.include) or None,
        cp_exclusion=list(settings.exclude) or None,
    ).best()
    return None if best is None else str(best)


def rebuild(part: Part, settings: Settings | None = None) -> Part:
    """A new part built from what `part` means (see the module's text)."""
    settings = settings or Settings()
    info = part.info()
    if part.parts:
        if info.content_type is None:
            raise ValueError("multipart message has no content-type information")
        boundary = info.parameters.get("boundary") or secrets.token_urlsafe(16)
        new = new_multipart(info.content_type, [rebuild(c, settings) for c in part.parts], boundary)
    else:
        body = _body(part, settings)
        if isinstance(body, str):
            new = new_text(info.content_type or "text/plain", body)
        else:
            options = None
            if info.attachment:
                options = {
                    "file_name": info.file_name,
                    "inline": info.disposition == "inline",
                    "content_id": info.content_id,
                }
            new = new_binary(info.content_type or "application/octet-stream", body, options)
    _copy_headers(part, new)
    return new


def _body(part: Part, settings: Settings) -> str | bytes:
    """A leaf's content: text decoded with its charset, else as UTF-8 when it is, else with
    the detected charset (when asked), else as UTF-8 lossily; binary parts as bytes."""
    info, data = part.info(), part.raw_decoded()
    if not info.is_text:
        return data
    text = decode_text(data, info.charset)  # the declared charset, then UTF-8
    if text is not None:
        return text
    if settings.detect_encoding:
        guessed = detect(data, settings)
        if guessed is not None:
            return guessed
    return data.decode("utf-8", "replace")


def _copy_headers(old: Part, new: Part) -> None:
    mime = {"content-type", "content-transfer-encoding", "content-disposition"}
    for each in old.fields():
        name = each.name.strip()
        lower = name.lower()
        if lower == "content-id" or not each.colon:
            continue
        if lower in mime:
            _merge_params(new, each)
            continue
        try:
            new.add(_CANONICAL_NAMES.get(lower, name), _rebuilt_value(lower, each))
        except (ValueError, TypeError):
            continue  # an unreadable structured header is dropped, as KumoMTA does


def _rebuilt_value(name: str, each: Field) -> str:
    kind = structured.kind_of(name)
    if name == "date":
        when = email.utils.parsedate_to_datetime(each.value)
        return email.utils.format_datetime(when)
    if kind == structured.UNSTRUCTURED:
        return encode_value(each.value)
    return structured.encode(kind, structured.parse(kind, each.raw))


def _merge_params(new: Part, each: Field) -> None:
    try:
        old = structured.mime_params(each.raw)
    except ValueError:
        return
    current = new.first(each.name.strip())
    if current is None:
        return
    shape = structured.mime_params(current.raw)
    for key, value in old["parameters"].items():
        shape["parameters"].setdefault(key, value)
    _set(new, current.name, structured.mime_params_text(shape))


# --- the simplified structure ------------------------------------------------------------------


@dataclass
class Structure:
    """The main parts of a tree: the first text/plain, text/html, text/x-amp-html (inline),
    the part whose headers are the message's, and every other leaf as an attachment."""

    header: Part
    text: Part | None = None
    html: Part | None = None
    amp_html: Part | None = None
    attachments: list[Part] = field(default_factory=list)


_PRIMARY = {"text/plain": "text", "text/html": "html", "text/x-amp-html": "amp_html"}


def simple_structure(part: Part) -> Structure:
    """KumoMTA's walk (`get_simple_structure`)."""
    info = part.info()
    content_type = info.content_type
    if content_type is None:
        return Structure(part, text=part)
    inline = not info.attachment or info.disposition == "inline"
    if inline and content_type in _PRIMARY:
        structure = Structure(part)
        setattr(structure, _PRIMARY[content_type], part)
        return structure
    if not content_type.startswith("multipart/"):
        return Structure(part, attachments=[part])
    found = Structure(part)
    for child in part.parts:
        inner = simple_structure(child)
        for slot in _PRIMARY.values():
            candidate = getattr(inner, slot)
            if candidate is None:
                continue
            if getattr(found, slot) is None:
                setattr(found, slot, candidate)
            else:
                found.attachments.append(candidate)
        found.attachments.extend(inner.attachments)
    return found
