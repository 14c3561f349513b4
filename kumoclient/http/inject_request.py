"""The inject API's request: JSON in, a checked and typed InjectRequest out, with no I/O.

The request is KumoMTA's (`POST /api/inject/v1`).

`parse_request` checks the shape, the types and every address (core/address.py); a problem is
BadInjectRequest naming the field (`recipients[2].email: ...`). Request fields:
`envelope_sender` (`""` is the null sender), `recipients` (`email`, `name`, `substitutions`),
`content` (a whole message, or a builder object: `subject`, `text_body`, `html_body`, `from`,
`reply_to`, `headers`, `attachments`), `substitutions`, `template_dialect` (`Jinja` or
`Static`), `deferred_spool` and `deferred_generation` (booleans, accepted and ignored).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kumoclient.core import msgid
from kumoclient.core.address import check_mailbox, check_sender
from kumoclient.errors import AddressError, BadInjectRequest

DIALECTS = ("Jinja", "Static")

HEADER_NAME = re.compile(r"[!-9;-~]+")
_REQUEST_KEYS = frozenset(
    {
        "envelope_sender",
        "recipients",
        "content",
        "substitutions",
        "template_dialect",
        "deferred_spool",
        "deferred_generation",
    }
)
_RECIPIENT_KEYS = frozenset({"email", "name", "substitutions"})
_BUILDER_KEYS = frozenset(
    {"subject", "text_body", "html_body", "from", "reply_to", "headers", "attachments"}
)
_MAILBOX_KEYS = frozenset({"email", "name"})
_ATTACHMENT_KEYS = frozenset({"data", "content_type", "file_name", "content_id", "base64"})


@dataclass(frozen=True, slots=True)
class Mailbox:
    """`from` / `reply_to`: both parts are templates."""

    email: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    email: str
    name: str | None = None
    substitutions: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    data: bytes
    maintype: str
    subtype: str
    file_name: str | None = None
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class Builder:
    """The builder form of `content`; `headers` keep the request's order."""

    text_body: str | None = None
    html_body: str | None = None
    subject: str | None = None
    from_: Mailbox | None = None
    reply_to: Mailbox | None = None
    headers: tuple[tuple[str, str], ...] = ()
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class InjectRequest:
    envelope_sender: str
    recipients: tuple[Recipient, ...]
    content: str | Builder
    substitutions: Mapping[str, Any]
    template_dialect: str = "Jinja"


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _object(value: object, where: str, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadInjectRequest(f"{where}: expected an object, got {_kind(value)}")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise BadInjectRequest(
            f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(keys))})"
        )
    return value


def _string(data: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise BadInjectRequest(f"{where}{key}: missing")
        return None
    if not isinstance(value, str):
        raise BadInjectRequest(f"{where}{key}: expected a string, got {_kind(value)}")
    return value


def _substitutions(value: object, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInjectRequest(f"{where}: expected an object, got {_kind(value)}")
    return value


def check_address(address: str, where: str, *, allow_null: bool = False) -> str:
    """An envelope or header address (core/address.py's rules); BadInjectRequest naming
    `where` when it cannot be one."""
    try:
        return check_sender(address) if allow_null else check_mailbox(address)
    except AddressError as exc:
        raise BadInjectRequest(f"{where}: {exc}") from exc


def _mailbox(value: object, where: str) -> Mailbox | None:
    if value is None:
        return None
    data = _object(value, where, _MAILBOX_KEYS)
    email = _string(data, "email", f"{where}.", required=True)
    assert email is not None
    return Mailbox(email, _string(data, "name", f"{where}."))


def _content_type(text: str, where: str) -> tuple[str, str]:
    maintype, slash, subtype = text.split(";", 1)[0].strip().lower().partition("/")
    if not slash or not HEADER_NAME.fullmatch(maintype) or not HEADER_NAME.fullmatch(subtype):
        raise BadInjectRequest(f"{where}: {text!r} is not a MIME type such as 'image/png'")
    if maintype == "multipart":
        raise BadInjectRequest(f"{where}: an attachment cannot be {maintype}/{subtype}")
    return maintype, subtype


def _attachment(value: object, where: str) -> Attachment:
    data = _object(value, where, _ATTACHMENT_KEYS)
    payload = _string(data, "data", f"{where}.", required=True)
    content_type = _string(data, "content_type", f"{where}.", required=True)
    assert payload is not None
    assert content_type is not None
    encoded = data.get("base64", False)
    if encoded is None:
        encoded = False
    if not isinstance(encoded, bool):
        raise BadInjectRequest(f"{where}.base64: expected a boolean, got {_kind(encoded)}")
    if encoded:
        try:
            raw = base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BadInjectRequest(f"{where}.data: invalid base64: {exc}") from exc
    else:
        raw = payload.encode("utf-8")
    maintype, subtype = _content_type(content_type, f"{where}.content_type")
    file_name = _string(data, "file_name", f"{where}.")
    content_id = _string(data, "content_id", f"{where}.")
    for key, text in (("file_name", file_name), ("content_id", content_id)):
        if text is not None and ("\r" in text or "\n" in text or not text.strip()):
            raise BadInjectRequest(f"{where}.{key}: must be one non-empty line")
    return Attachment(raw, maintype, subtype, file_name, content_id)


def _builder(data: dict[str, Any]) -> Builder:
    text_body = _string(data, "text_body", "content.")
    html_body = _string(data, "html_body", "content.")
    if text_body is None and html_body is None:
        raise BadInjectRequest("content: at least one of text_body and html_body must be given")
    raw_headers = data.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise BadInjectRequest(f"content.headers: expected an object, got {_kind(raw_headers)}")
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in raw_headers.items():
        if not HEADER_NAME.fullmatch(name):
            raise BadInjectRequest(f"content.headers: {name!r} is not a valid header name")
        if name.lower() in seen:
            raise BadInjectRequest(
                f"content.headers: {name!r} is given twice (header names ignore case)"
            )
        if not isinstance(value, str):
            raise BadInjectRequest(f"content.headers.{name}: expected a string, got {_kind(value)}")
        seen.add(name.lower())
        headers.append((name, value))
    raw_attachments = data.get("attachments") or []
    if not isinstance(raw_attachments, list):
        raise BadInjectRequest(
            f"content.attachments: expected a list, got {_kind(raw_attachments)}"
        )
    return Builder(
        text_body=text_body,
        html_body=html_body,
        subject=_string(data, "subject", "content."),
        from_=_mailbox(data.get("from"), "content.from"),
        reply_to=_mailbox(data.get("reply_to"), "content.reply_to"),
        headers=tuple(headers),
        attachments=tuple(
            _attachment(a, f"content.attachments[{i}]") for i, a in enumerate(raw_attachments)
        ),
    )


def _recipient(value: object, where: str) -> Recipient:
    data = _object(value, where, _RECIPIENT_KEYS)
    email = _string(data, "email", f"{where}.", required=True)
    assert email is not None
    name = _string(data, "name", f"{where}.")
    if name is not None and ("\r" in name or "\n" in name):
        raise BadInjectRequest(f"{where}.name: must not contain line breaks")
    return Recipient(
        check_address(email, f"{where}.email"),
        name,
        _substitutions(data.get("substitutions"), f"{where}.substitutions"),
    )


def parse_request(body: object) -> InjectRequest:
    """The request, checked; BadInjectRequest names the first problem."""
    data = _object(body, "request", _REQUEST_KEYS)
    sender = _string(data, "envelope_sender", "", required=True)
    assert sender is not None
    check_address(sender, "envelope_sender", allow_null=True)
    for flag in ("deferred_spool", "deferred_generation"):
        if data.get(flag) is not None and not isinstance(data[flag], bool):
            raise BadInjectRequest(f"{flag}: expected a boolean, got {_kind(data[flag])}")
    recipients = data.get("recipients")
    if recipients is None:
        raise BadInjectRequest("recipients: missing")
    if not isinstance(recipients, list):
        raise BadInjectRequest(f"recipients: expected a list, got {_kind(recipients)}")
    if not recipients:
        raise BadInjectRequest("recipients: the list is empty")
    if len(recipients) > msgid.MAX_RECIPIENTS:
        raise BadInjectRequest(f"recipients: at most {msgid.MAX_RECIPIENTS} per request")
    dialect = _string(data, "template_dialect", "") or "Jinja"
    if dialect not in DIALECTS:
        raise BadInjectRequest(
            f"template_dialect: {dialect!r} is not supported (supported: {', '.join(DIALECTS)})"
        )
    content = data.get("content")
    if content is None:
        raise BadInjectRequest("content: missing")
    if isinstance(content, dict):
        parsed: str | Builder = _builder(_object(content, "content", _BUILDER_KEYS))
    elif isinstance(content, str):
        parsed = content
    else:
        raise BadInjectRequest(f"content: expected a string or an object, got {_kind(content)}")
    return InjectRequest(
        envelope_sender=sender,
        recipients=tuple(_recipient(r, f"recipients[{i}]") for i, r in enumerate(recipients)),
        content=parsed,
        substitutions=_substitutions(data.get("substitutions"), "substitutions"),
        template_dialect=dialect,
    )
