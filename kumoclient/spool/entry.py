"""The spool's file formats, pure: `data/<id>`, `meta/<id>.json` and `incoming/` drop files.

`data/<id>`: `KCSPOOL1 <header length>\\n`, a JSON header (id, sender, recipient, meta,
created, size, crc32 of the content, reception_protocol; `due` when the first attempt is not
due at once, `schedule` for a message with scheduling constraints), `\\n`, then the content
bytes.
`meta/<id>.json`: the scheduling state (attempts, due, last_response, meta), written after
the first attempt and taking precedence over the header's meta. A drop file: one JSON line
(sender, recipients, meta per recipient or null, created, reception_protocol), then the content.

Decoding raises SpoolEntryCorrupt for anything that does not have these shapes or whose values
fields.py refuses (a NaN time, a number where an address belongs); what cannot be represented
in them (a submission for more recipients than an id can number, a value fields.py would
refuse on reading) is refused with SpoolError when encoding (`check_message`, `encode_drop`).
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, replace
from typing import Any

from kumoclient.core import msgid
from kumoclient.core.schedule import schedule_json
from kumoclient.errors import SpoolEntryCorrupt, SpoolError
from kumoclient.records import SpooledMessage
from kumoclient.spool import fields

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
    meta: tuple[dict[str, Any], ...] = ()  # per recipient; empty means {} for each
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
    fields: dict[str, Any] = {
        "id": message.id,
        "sender": message.sender,
        "recipient": message.recipient,
        "meta": message.meta,
        "created": message.created,
        "size": len(content),
        "crc32": zlib.crc32(content),
        "reception_protocol": message.reception_protocol,
    }
    fields.update(_scheduling_fields(message))
    header = json.dumps(fields, separators=(",", ":")).encode()
    return MAGIC + str(len(header)).encode() + b"\n" + header + b"\n" + content


def _scheduling_fields(message: SpooledMessage) -> dict[str, Any]:
    """`due` (when not the creation time) and `schedule` (when set): absent in most entries."""
    extra: dict[str, Any] = {}
    if message.due != message.created:
        extra["due"] = message.due
    if message.schedule is not None:
        extra["schedule"] = schedule_json(message.schedule)
    return extra


def header_end(blob: bytes) -> int:
    """How many bytes from the start of an entry hold its header line and header (capped at
    HEADER_LIMIT); 0 when `blob` does not tell (decode_header then says what is wrong)."""
    newline = blob.find(b"\n", len(MAGIC))
    digits = blob[len(MAGIC) : newline]
    if not blob.startswith(MAGIC) or newline < 0 or not digits.isdigit():
        return 0
    return min(int(digits), HEADER_LIMIT) + newline + 2


def decode_header(blob: bytes, file_size: int, message_id: str) -> tuple[dict[str, Any], int]:
    """The header of an entry and the offset where its content starts; checks the size (and
    the types of `size` and `crc32`; `message_from_header` checks the other fields).

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
        size = fields.count(header["size"], "size")
        if "crc32" in header:
            fields.count(header["crc32"], "crc32", fields.CRC_MAX)
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
    """The message a decoded header describes (its state as at reception), every field
    checked (fields.py)."""
    try:
        message = _message(header)
    except _MALFORMED as exc:
        raise SpoolEntryCorrupt(
            f"{message_id}: corrupt header: {exc}", message_id=message_id
        ) from exc
    if message.id != message_id:
        raise SpoolEntryCorrupt(
            f"header id {message.id} does not match the file name {message_id}",
            message_id=message_id,
        )
    return message


def check_message(message: SpooledMessage) -> None:
    """SpoolError for a message the spool would quarantine when reading it back (a library
    caller's recipient that is not a mailbox, a NaN time): what is written can be read."""
    try:
        _checked(_header_fields(message))
        _state(_state_fields(message))
    except _MALFORMED as exc:
        raise SpoolError(f"cannot spool {message.id}: {exc}") from exc


def _header_fields(message: SpooledMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "sender": message.sender,
        "recipient": message.recipient,
        "meta": message.meta,
        "created": message.created,
        "size": message.size,
        "reception_protocol": message.reception_protocol,
        **_scheduling_fields(message),
    }


def _message(header: dict[str, Any]) -> SpooledMessage:
    """The message of a header's fields, each checked."""
    return SpooledMessage(**_checked(header))


def _checked(header: dict[str, Any]) -> dict[str, Any]:
    """A header's fields as SpooledMessage takes them, each checked (fields.py); absent
    optional fields take the values entries without them always had."""
    created = fields.time(header.get("created", 0.0), "created")
    return {
        "id": fields.text(header["id"], "id"),
        "sender": fields.sender(header["sender"]),
        "recipient": fields.recipient(header["recipient"]),
        "meta": fields.meta(header.get("meta", {})),
        "created": created,
        "size": fields.count(header["size"], "size"),
        "due": fields.time(header.get("due", created), "due"),
        "reception_protocol": fields.text(
            header.get("reception_protocol", "ESMTP"), "reception_protocol"
        ),
        "schedule": fields.schedule(header.get("schedule")),
    }


# --- meta/<id>.json ----------------------------------------------------------------------------


def encode_state(message: SpooledMessage) -> bytes:
    """The bytes of `meta/<id>.json`."""
    return json.dumps(_state_fields(message), separators=(",", ":")).encode()


def _state_fields(message: SpooledMessage) -> dict[str, Any]:
    return {
        "attempts": message.attempts,
        "due": message.due,
        "last_response": message.last_response,
        "meta": message.meta,
    }


def apply_state(message: SpooledMessage, blob: bytes) -> SpooledMessage:
    """`message` with the state of its `meta/<id>.json`, every field checked (fields.py)."""
    try:
        state = json.loads(blob)
        if not isinstance(state, dict):
            raise ValueError("not a JSON object")
        attempts, due, last_response, meta = _state(state)
    except _MALFORMED as exc:
        raise SpoolEntryCorrupt(
            f"{message.id}: corrupt metadata file: {exc}", message_id=message.id
        ) from exc
    return replace(
        message,
        attempts=attempts,
        due=due,
        last_response=last_response,
        meta=message.meta if meta is None else meta,
    )


def _state(state: dict[str, Any]) -> tuple[int, float, str | None, dict[str, Any] | None]:
    """attempts, due, last_response and meta (None: absent, the header's stands)."""
    return (
        fields.count(state["attempts"], "attempts", fields.ATTEMPTS_MAX),
        fields.time(state["due"], "due"),
        fields.optional_text(state.get("last_response"), "last_response"),
        fields.meta(state["meta"]) if "meta" in state else None,
    )


# --- incoming/<base>.msg -----------------------------------------------------------------------


def drop_name(base: str) -> str:
    """The file name of a drop file for the submission with id prefix `base`."""
    return f"{base}.msg"


def encode_drop(submission: Submission, created: float) -> bytes:
    """The bytes of a drop file; SpoolError for a submission `decode_drop` would refuse."""
    try:
        _drop_envelope(submission.sender, list(submission.recipients), list(submission.meta))
        fields.time(created, "created")
        fields.text(submission.reception_protocol, "reception_protocol")
    except ValueError as exc:
        raise SpoolError(f"cannot drop this submission: {exc}") from exc
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
    its creation time; every field checked (fields.py)."""
    base = check_drop_name(name)
    try:
        header = json.loads(line)
        if not isinstance(header, dict):
            raise ValueError("not a JSON object")
        meta = header.get("meta")
        sender, recipients, metas = _drop_envelope(
            header["sender"], header["recipients"], [] if meta is None else meta
        )
        submission = Submission(
            sender=sender,
            recipients=recipients,
            content=content,
            meta=metas,
            base=base,
            reception_protocol=fields.text(
                header.get("reception_protocol", "Inject"), "reception_protocol"
            ),
        )
        return submission, fields.time(header["created"], "created")
    except _MALFORMED as exc:
        raise SpoolEntryCorrupt(f"{name}: corrupt incoming file: {exc}") from exc


def _drop_envelope(
    sender: Any, recipients: Any, meta: Any
) -> tuple[str, tuple[str, ...], tuple[dict[str, Any], ...]]:
    """A drop file's envelope, checked: sender, recipients, meta per recipient (or none)."""
    if not isinstance(recipients, list):
        raise ValueError(f"recipients is {fields.kind(recipients)}, not an array")
    if not 0 < len(recipients) <= msgid.MAX_RECIPIENTS:
        raise ValueError("bad number of recipients")
    if not isinstance(meta, list) or (meta and len(meta) != len(recipients)):
        raise ValueError("meta does not match the recipients")
    return (
        fields.sender(sender),
        tuple(fields.recipient(r) for r in recipients),
        tuple(fields.meta(m) for m in meta),
    )
