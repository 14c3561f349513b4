"""The inject API (`POST /api/inject/v1`, KumoMTA's request shape): from a JSON request to
per-recipient RFC 5322 messages.

1. `parse_request` checks the shape and every address; a problem is BadInjectRequest naming
   the field (`recipients[2].email: ...`).
2. `generate` compiles the templates once (Jinja in a sandbox, or `Static`: no templating),
   then renders and builds one message per recipient. Template variables: the request's
   `substitutions`, then `email` and `name` of the recipient, then the recipient's own
   `substitutions` (later ones win), as in KumoMTA. `content` is either a whole message (a
   template as a whole) or a builder object: `subject`, `text_body`, `html_body` (HTML
   escaping of substituted values), `from`, `reply_to`, `headers` (templates too) and
   `attachments` (never templated); the builder adds `To` (from the recipient), `Date`,
   `Message-ID` and `MIME-Version` unless given.
3. `InjectService.handle` is the HTTP handler: it validates and builds every message before
   anything is stored, so a bad request leaves nothing behind; then Reception runs
   `http_message_generated` per message and spools the ones the policy did not refuse.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.policy import SMTP as _SMTP
from email.utils import formatdate, make_msgid
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from kumoclient import logs
from kumoclient.core import msgid
from kumoclient.engine.reception import Reception
from kumoclient.errors import KumoClientError, SubmissionRefused
from kumoclient.http import Client, HttpError

log = logs.get_logger(__name__)

# 7-bit transfer encodings (quoted-printable, base64) for non-ASCII text: deliverable to
# servers without 8BITMIME
SMTP = _SMTP.clone(cte_type="7bit")
MAX_MESSAGE_SIZE = 20 * 1024 * 1024  # per generated message, as the SMTP listener's default
# every message of a request is built before any is stored: this bounds the memory it takes
MAX_REQUEST_SIZE = 256 * 1024 * 1024
DIALECTS = ("Jinja", "Static")

_BAD_ADDRESS = re.compile(r"[\x00-\x20\x7f<>]")
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_FIRST_HEADER = re.compile(r"[!-9;-~]+:")
_LINE_END = re.compile(r"\r\n|\r|\n")
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


class BadInjectRequest(KumoClientError):
    """The request cannot be accepted as it is; the message names the field."""


# --- the request ---------------------------------------------------------------------------


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
    """An envelope or header address: `local@domain`, without controls, spaces or `<>`."""
    if address == "" and allow_null:
        return address
    if _BAD_ADDRESS.search(address):
        raise BadInjectRequest(
            f"{where}: invalid address {address!r}: it contains a control character, "
            "a space, < or >"
        )
    local, at, domain = address.partition("@")
    if not at or not local or not domain or "@" in domain:
        raise BadInjectRequest(f"{where}: invalid address {address!r}: expected local-part@domain")
    return address


def _mailbox(value: object, where: str) -> Mailbox | None:
    if value is None:
        return None
    data = _object(value, where, _MAILBOX_KEYS)
    email = _string(data, "email", f"{where}.", required=True)
    assert email is not None
    return Mailbox(email, _string(data, "name", f"{where}."))


def _content_type(text: str, where: str) -> tuple[str, str]:
    maintype, slash, subtype = text.split(";", 1)[0].strip().lower().partition("/")
    if not slash or not _HEADER_NAME.fullmatch(maintype) or not _HEADER_NAME.fullmatch(subtype):
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
        if not _HEADER_NAME.fullmatch(name):
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


# --- templates -----------------------------------------------------------------------------

MAX_SEQUENCE = 1024 * 1024  # longest string or list that `*` may make in a template
MAX_EXPONENT = 1000


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox (no access to Python internals) that also refuses the two operators
    that make huge values from a short template: `'x' * 10**9` and `9 ** 9 ** 9`. (The
    API serves trusted or authenticated clients; this is not a CPU-time limit.)"""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is over the limit of {MAX_EXPONENT}")
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(count, int)
                    and len(sequence) * count > MAX_SEQUENCE
                ):
                    raise SecurityError(
                        f"'*' would make {len(sequence) * count} items, "
                        f"over the limit of {MAX_SEQUENCE}"
                    )
        return super().call_binop(context, operator, left, right)


_TEXT = _Sandbox(keep_trailing_newline=True, autoescape=False)
_HTML = _Sandbox(keep_trailing_newline=True, autoescape=True)

Render = Callable[[Mapping[str, Any]], str]


def _compile(source: str, where: str, dialect: str, *, html: bool = False) -> Render:
    if dialect == "Static":
        return lambda variables: source
    environment = _HTML if html else _TEXT
    try:
        template = environment.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise BadInjectRequest(
            f"{where}: template syntax error at line {exc.lineno}: {exc.message}"
        ) from exc

    def render(variables: Mapping[str, Any]) -> str:
        try:
            return template.render(variables)
        except Exception as exc:  # whatever a template raises is the request's problem
            raise BadInjectRequest(f"{where}: template error: {type(exc).__name__}: {exc}") from exc

    return render


# --- building ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Generated:
    """One message of the request: its recipient and its RFC 5322 bytes (CRLF)."""

    recipient: str
    content: bytes


def _raw_message(text: str, where: str) -> bytes:
    if "\x00" in text:
        raise BadInjectRequest(f"{where}: the message contains NUL characters")
    if not _FIRST_HEADER.match(text):
        raise BadInjectRequest(
            f"{where}: not an RFC 5322 message: it must begin with a header field "
            "such as 'Subject: ...'"
        )
    text = _LINE_END.sub("\r\n", text)
    if not text.endswith("\r\n"):
        text += "\r\n"
    return text.encode("utf-8")


def _one_line(value: str, where: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise BadInjectRequest(f"{where}: a header value must not contain CR, LF or NUL")
    return value


def _address(email: str, name: str | None, where: str) -> Address:
    check_address(email, where)
    if not email.isascii():
        raise BadInjectRequest(
            f"{where}: {email!r}: the message builder writes ASCII addresses only "
            "(send a whole message as content for an internationalized address)"
        )
    local, _, domain = email.rpartition("@")
    try:
        return Address(display_name=_one_line(name or "", where), username=local, domain=domain)
    except (ValueError, IndexError) as exc:
        raise BadInjectRequest(f"{where}: invalid address {email!r}: {exc}") from exc


def _text_part(text: str, subtype: str) -> MIMEPart:
    part = MIMEPart(policy=SMTP)
    part.set_content(text, subtype=subtype)
    return part


def _binary_part(attachment: Attachment) -> MIMEPart:
    part = MIMEPart(policy=SMTP)
    cid = attachment.content_id
    if cid is not None and not cid.startswith("<"):
        cid = f"<{cid}>"
    part.set_content(
        attachment.data,
        attachment.maintype,
        attachment.subtype,
        disposition="inline" if cid else "attachment",
        filename=attachment.file_name,
        cid=cid,
    )
    return part


def _multipart(subtype: str, parts: list[MIMEPart]) -> MIMEPart:
    container = MIMEPart(policy=SMTP)
    getattr(container, f"make_{subtype}")()
    for part in parts:
        container.attach(part)
    return container


class _Compiled:
    """A request with its templates compiled: `message(recipient)` builds one message."""

    def __init__(self, request: InjectRequest) -> None:
        self.request = request
        dialect = request.template_dialect
        content = request.content
        self.raw: Render | None = None
        self.builder = Builder()
        self.parts: dict[str, Render] = {}
        self.headers: list[tuple[str, Render]] = []
        if isinstance(content, str):
            self.raw = _compile(content, "content", dialect)
            return
        self.builder = content
        if content.text_body is not None:
            self.parts["text"] = _compile(content.text_body, "content.text_body", dialect)
        if content.html_body is not None:
            self.parts["html"] = _compile(
                content.html_body, "content.html_body", dialect, html=True
            )
        for key, mailbox in (("from", content.from_), ("reply_to", content.reply_to)):
            if mailbox is not None:
                self.parts[f"{key}.email"] = _compile(
                    mailbox.email, f"content.{key}.email", dialect
                )
                if mailbox.name is not None:
                    self.parts[f"{key}.name"] = _compile(
                        mailbox.name, f"content.{key}.name", dialect
                    )
        overridden = {"subject"} if content.subject is not None else set()
        overridden |= {"from"} if content.from_ is not None else set()
        overridden |= {"reply-to"} if content.reply_to is not None else set()
        for name, value in content.headers:
            if name.lower() not in overridden:
                self.headers.append((name, _compile(value, f"content.headers.{name}", dialect)))
        if content.subject is not None:
            self.headers.append(("Subject", _compile(content.subject, "content.subject", dialect)))

    def message(self, recipient: Recipient) -> Generated:
        variables: dict[str, Any] = dict(self.request.substitutions)
        variables["email"] = recipient.email
        if recipient.name is not None:
            variables["name"] = recipient.name
        variables.update(recipient.substitutions or {})
        try:
            if self.raw is not None:
                content = _raw_message(self.raw(variables), "content")
            else:
                content = self._build(recipient, variables)
        except BadInjectRequest as exc:
            raise BadInjectRequest(f"recipient {recipient.email}: {exc}") from exc
        if len(content) > MAX_MESSAGE_SIZE:
            raise BadInjectRequest(
                f"recipient {recipient.email}: the generated message is {len(content)} bytes, "
                f"over the limit of {MAX_MESSAGE_SIZE}"
            )
        return Generated(recipient.email, content)

    def _mailbox(self, key: str, variables: Mapping[str, Any]) -> Address:
        email = self.parts[f"{key}.email"](variables)
        name_of = self.parts.get(f"{key}.name")
        return _address(email, name_of(variables) if name_of else None, f"content.{key}")

    def _build(self, recipient: Recipient, variables: Mapping[str, Any]) -> bytes:
        builder = self.builder
        msg = EmailMessage(policy=SMTP)
        given = {name.lower() for name, _ in self.headers}
        try:
            sender = self.request.envelope_sender.rpartition("@")[2]
            if builder.from_ is not None:
                author = self._mailbox("from", variables)
                msg["From"] = author
                sender = author.domain
            if builder.reply_to is not None:
                msg["Reply-To"] = self._mailbox("reply_to", variables)
            if "to" not in given:
                msg["To"] = _address(recipient.email, recipient.name, "recipient")
            for name, render in self.headers:
                msg[name] = _one_line(render(variables), f"content.headers.{name}")
            if "date" not in given:
                msg["Date"] = formatdate(usegmt=True)
            if "message-id" not in given:
                msg["Message-ID"] = make_msgid(domain=sender or "kumoclient.invalid")
            self._body(msg, variables)
            if "MIME-Version" not in msg:
                msg["MIME-Version"] = "1.0"
            return msg.as_bytes(policy=SMTP)
        except BadInjectRequest:
            raise
        except (ValueError, TypeError, IndexError, LookupError, UnicodeError) as exc:
            raise BadInjectRequest(f"cannot build the message: {exc}") from exc

    def _body(self, msg: EmailMessage, variables: Mapping[str, Any]) -> None:
        """text | html | alternative(text, html), in related(…, inline attachments) when
        there are some, in mixed(…, attachments) when there are some."""
        texts = [
            (self.parts[key](variables), subtype)
            for key, subtype in (("text", "plain"), ("html", "html"))
            if key in self.parts
        ]
        attachments = self.builder.attachments
        if len(texts) == 1 and not attachments:
            msg.set_content(texts[0][0], subtype=texts[0][1])
            return
        nodes = [_text_part(text, subtype) for text, subtype in texts]
        body = nodes[0] if len(nodes) == 1 else _multipart("alternative", nodes)
        inline = [_binary_part(a) for a in attachments if a.content_id]
        attached = [_binary_part(a) for a in attachments if not a.content_id]
        if inline:
            body = _multipart("related", [body, *inline])
        if attached:
            body = _multipart("mixed", [body, *attached])
        getattr(msg, f"make_{body.get_content_subtype()}")()
        msg.set_payload(list(body.iter_parts()))


def generate(request: InjectRequest) -> list[Generated]:
    """Every recipient's message; BadInjectRequest for a template or build problem."""
    compiled = _Compiled(request)
    messages: list[Generated] = []
    distinct: dict[bytes, bytes] = {}  # equal contents share one object (and one count)
    total = 0
    for recipient in request.recipients:
        generated = compiled.message(recipient)
        content = distinct.setdefault(generated.content, generated.content)
        if content is generated.content:
            total += len(content)
            if total > MAX_REQUEST_SIZE:
                raise BadInjectRequest(
                    f"the messages of this request exceed {MAX_REQUEST_SIZE} bytes in all; "
                    "send the recipients in several smaller requests"
                )
        messages.append(Generated(recipient.email, content))
    return messages


# --- the HTTP handler ----------------------------------------------------------------------


class InjectService:
    """`POST /api/inject/v1` on a Reception: parse, build all, then run policy and spool."""

    def __init__(self, reception: Reception) -> None:
        self.reception = reception

    async def handle(self, body: object, client: Client) -> dict[str, object]:
        """The response object, or HttpError: 400 for a bad request, 500 when the policy
        fails, 503 when the spool cannot take the messages (nothing spooled in each case)."""
        try:
            request = parse_request(body)
            # rendering and MIME building are CPU work: off the event loop
            messages = await asyncio.to_thread(generate, request)
        except BadInjectRequest as exc:
            log.info("inject request refused", peer=client.address, error=str(exc))
            raise HttpError(400, str(exc)) from exc
        meta = {"received_from": client.address}
        if client.user is not None:
            meta["http_auth"] = client.user
        try:
            accepted = await self.reception.accept_http(
                request.envelope_sender,
                [(m.recipient, m.content) for m in messages],
                meta,
            )
        except SubmissionRefused as exc:
            if exc.code == 452:
                raise HttpError(
                    503,
                    f"the spool cannot take the messages ({exc.text}); nothing was spooled",
                ) from exc
            raise HttpError(
                500,
                f"http_message_generated failed ({exc.text}); nothing was spooled",
            ) from exc
        return {
            "success_count": len(accepted.ids),
            "fail_count": len(accepted.refused),
            "failed_recipients": [recipient for recipient, _ in accepted.refused],
            "errors": [f"{recipient}: {reason}" for recipient, reason in accepted.refused],
        }
