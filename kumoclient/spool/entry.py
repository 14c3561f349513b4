"""The spool's file formats, pure: `data/<id>`, `meta/<id>.json` and `incoming/` drop files.

`data/<id>`: `KCSPOOL1 <header length>\\n`, a JSON header (id, sender, recipient, meta,
created, size, crc32 of the content, reception_protocol), `\\n`, then the content bytes.
`meta/<id>.json`: the scheduling state (attempts, due, last_response, meta), written after
the first attempt and taking precedence over the header's meta. A drop file: one JSON line
(sender, recipients, meta per recipient or null, created, reception_protocol), then the content.

Decoding raises SpoolEntryCorrupt for anything that does not have these shapes; what cannot
be represented in them (a submission for more recipients than an id can number) is refused
with SpoolError when encoding.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, replace
from typing import Any

from kumoclient.core import msgid
from kumoclient.errors import SpoolEntryCorrupt, SpoolError
from kumoclient.records import SpooledMessage

MAGIC = b"KCSPOOL1 "
HEADER_LIMIT = 1 << 20
_REQUIRED = frozenset({"id", "sender", "recipient", "size"})
# what converting a decoded JSON value to the expected type may raise (ValueError covers
# JSONDecodeError and UnicodeDecodeError; RecursionError: nesting deeper than json allows)
_MALFORMED = (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError)
_DROP_NAME = re.compile(r"[0-9a-f]{28}\.msg")


@dataclass(frozen=True, slots=True)
class Submission:
    """One submission: an envelope with N recipients and the content they share."""

    sender: str
    recipients: tuple[str, ...]
    content: bytes
    meta: tuple[dict[str, str], ...] = ()  # per recipient; empty means {} for each
    base: str = ""  # id prefix; chosen on store when empty
    reception_protocol: str = "ESMTP"


def check_submission(submission: Submission) -> None:
    """SpoolError for a submission the spool cannot take: more recipients than ids can number,
    or meta that is not one mapping per recipient."""
    if len(submission.recipients) > msgid.MAX_RECIPIENTS:
        raise SpoolError(f"a submission has at most {msgid.MAX_RECIPIENTS} recipients")
    if submission.meta and len(submission.meta) != len(submission.recipients):
        raise SpoolError("a submission's meta must be one mapping per recipient")


# --- data/<id> ---------------------------------------------------------------------------------


def encode_entry(message: SpooledMessage, content: bytes) -> bytes:
    """The bytes of `data/<id>`."""
    header = json.dumps(
        {
            "id": message.id,
            "sender": message.sender,
            "recipient": message.recipient,
            "meta": message.meta,
            "created": message.created,
            "size": len(content),
            "crc32": zlib.crc32(content),
            "reception_protocol": message.reception_protocol,
        },
        separators=(",", ":"),
    ).encode()
    return MAGIC + str(len(header)).encode() + b"\n" + header + b"\n" + content


def header_end(blob: bytes) -> int:
    """How many bytes from the start of an entry hold its header line and header (capped at
    HEADER_LIMIT); 0 when `blob` does not tell (decode_header then says what is wrong)."""
    newline = blob.find(b"\n", len(MAGIC))
    digits = blob[len(MAGIC) : newline]
    if not blob.startswith(MAGIC) or newline < 0 or not digits.isdigit():
        return 0
    return min(int(digits), HEADER_LIMIT) + newline + 2


def decode_header(blob: bytes, file_size: int, message_id: str) -> tuple[dict[str, Any], int]:
    """The header of an entry and the offset where its content starts; checks the size.

    `blob` holds at least the header (`header_end`), `file_size` is the entry's size."""
    if not blob.startswith(MAGIC):
        raise SpoolEntryCorrupt(
            f"{message_id}: not a spool entry (bad magic)", message_id=message_id
        )
    newline = blob.find(b"\n", len(MAGIC))
    if newline < 0:
        raise SpoolEntryCorrupt(f"{message_id}: truncated header line", message_id=message_id)
    digits = blob[len(MAGIC) : newline]
    if not digits.isdigit():
        raise SpoolEntryCorrupt(f"{message_id}: bad header length", message_id=message_id)
    length, start = int(digits), newline + 1
    if length > HEADER_LIMIT or len(blob) < start + length + 1:
        raise SpoolEntryCorrupt(f"{message_id}: truncated header", message_id=message_id)
    try:
        header = json.loads(blob[start : start + length])
        if not isinstance(header, dict) or not set(header) >= _REQUIRED:
            raise ValueError("header lacks id, sender, recipient or size")
        size = int(header["size"])
    except _MALFORMED as exc:
        raise SpoolEntryCorrupt(
            f"{message_id}: corrupt header: {exc}", message_id=message_id
        ) from exc
    content_start = start + length + 1
    if file_size != content_start + size:
        raise SpoolEntryCorrupt(
            f"{message_id}: truncated content: {file_size - content_start} of {size} bytes",
            message_id=message_id,
        )
    return header, content_start


def check_content(header: dict[str, Any], content: bytes, message_id: str) -> bytes:
    """`content`, once it matches the header's CRC-32 (entries without one are not checked)."""
    if "crc32" in header and zlib.crc32(content) != header["crc32"]:
        raise SpoolEntryCorrupt(f"{message_id}: content checksum mismatch", message_id=message_id)
    return content


def message_from_header(header: dict[str, Any], message_id: str) -> SpooledMessage:
    """The message a decoded header describes (its state as at reception)."""
    try:
        message = SpooledMessage(
            id=header["id"],
            sender=header["sender"],
            recipient=header["recipient"],
            meta=dict(header.get("meta") or {}),
            created=float(header.get("created", 0)),
            size=int(header["size"]),
            due=float(header.get("created", 0)),
            reception_protocol=str(header.get("reception_protocol", "ESMTP")),
        )
    except _MALFORMED as exc:
        raise SpoolEntryCorrupt(
            f"{message_id}: header field of the wrong type: {exc}", message_id=message_id
        ) from exc
    if message.id != message_id:
        raise SpoolEntryCorrupt(
            f"header id {message.id} does not match the file name {message_id}",
            message_id=message_id,
        )
    return message


# --- meta/<id>.json ----------------------------------------------------------------------------


def encode_state(message: SpooledMessage) -> bytes:
    """The bytes of `meta/<id>.json`."""
    return json.dumps(
        {
            "attempts": message.attempts,
            "due": message.due,
            "last_response": message.last_response,
            "meta": message.meta,
        },
        separators=(",", ":"),
    ).encode()


def apply_state(message: SpooledMessage, blob: bytes) -> SpooledMessage:
    """`message` with the state of its `meta/<id>.json`."""
    try:
        state = json.loads(blob)
        return replace(
            message,
            attempts=int(state["attempts"]),
            due=float(state["due"]),
            last_response=state.get("last_response"),
            meta=dict(state.get("meta", message.meta)),
        )
    except _MALFORMED as exc:
        raise SpoolEntryCorrupt(
            f"{message.id}: corrupt metadata file: {exc}", message_id=message.id
        ) from exc


# --- incoming/<base>.msg -----------------------------------------------------------------------


def drop_name(base: str) -> str:
    """The file name of a drop file for the submission with id prefix `base`."""
    return f"{base}.msg"


def encode_drop(submission: Submission, created: float) -> bytes:
    """The bytes of a drop file; SpoolError for a submission `decode_drop` would refuse."""
    problem = _drop_problem(submission.sender, list(submission.recipients), submission.meta)
    if problem:
        raise SpoolError(f"cannot drop this submission: {problem}")
    header = json.dumps(
        {
            "sender": submission.sender,
            "recipients": list(submission.recipients),
            "meta": list(submission.meta) or None,
            "created": created,
            "reception_protocol": submission.reception_protocol,
        },
        separators=(",", ":"),
    ).encode()
    return header + b"\n" + submission.content


def check_drop_name(name: str) -> str:
    """The submission's id prefix named by a drop file's name."""
    if not _DROP_NAME.fullmatch(name):
        raise SpoolEntryCorrupt(f"{name}: not a name `kumoclient inject` writes")
    return name[:-4]


def decode_drop(name: str, line: bytes, content: bytes) -> tuple[Submission, float]:
    """The submission of drop file `name` from its first line and the content after it, and
    its creation time."""
    base = check_drop_name(name)
    try:
        header = json.loads(line)
        sender, recipients = header["sender"], header["recipients"]
        meta = tuple(header["meta"]) if header.get("meta") else ()
        problem = _drop_problem(sender, recipients, meta)
        if problem:
            raise ValueError(problem)
        submission = Submission(
            sender=sender,
            recipients=tuple(recipients),
            content=content,
            meta=meta,
            base=base,
            reception_protocol=str(header.get("reception_protocol", "Inject")),
        )
        return submission, float(header["created"])
    except _MALFORMED as exc:
        raise SpoolEntryCorrupt(f"{name}: corrupt incoming file: {exc}") from exc


def _drop_problem(sender: object, recipients: object, meta: tuple[Any, ...]) -> str:
    """What is wrong with a drop file's envelope ('' when nothing)."""
    if (
        not isinstance(sender, str)
        or not isinstance(recipients, list)
        or not all(isinstance(r, str) and "@" in r for r in recipients)
    ):
        return "sender or recipients are not addresses"
    if not 0 < len(recipients) <= msgid.MAX_RECIPIENTS:
        return "bad number of recipients"
    if meta and (
        len(meta) != len(recipients)
        or not all(
            isinstance(m, dict) and all(isinstance(v, str) for v in m.values()) for m in meta
        )
    ):
        return "meta does not match the recipients"
    return ""
