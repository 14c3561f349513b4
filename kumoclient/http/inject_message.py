"""The inject API's messages: one RFC 5322 message per recipient, with no I/O.

A checked InjectRequest in, one message (bytes, CRLF line ends) per recipient out.

`generate` compiles the templates once (Jinja in a sandbox, or `Static`: no templating), then
renders and builds one message per recipient. Template variables: the request's
`substitutions`, then `email` and `name` of the recipient, then the recipient's own
`substitutions` (later ones win), as in KumoMTA. `content` is either a whole message (a template
as a whole) or a builder object: `subject`, `text_body`, `html_body` (HTML escaping of
substituted values), `from`, `reply_to`, `headers` (templates too) and `attachments` (never
templated); the builder adds `To` (from the recipient), `Date`, `Message-ID` and `MIME-Version`
unless given. Non-ASCII text goes out quoted-printable or base64, so that servers without
8BITMIME take it. A problem is BadInjectRequest naming the recipient and the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.policy import SMTP as _SMTP
from email.utils import formatdate, make_msgid
from typing import Any

import jinja2

from kumoclient.core.address import split_mailbox, unquote_local_part
from kumoclient.core.template import CLOCK, OverLimit, RenderClock, Sandbox
from kumoclient.errors import BadInjectRequest
from kumoclient.http.inject_request import (
    Attachment,
    Builder,
    InjectRequest,
    Recipient,
    check_address,
)

# 7-bit transfer encodings (quoted-printable, base64) for non-ASCII text: deliverable to
# servers without 8BITMIME
SMTP = _SMTP.clone(cte_type="7bit")
MAX_MESSAGE_SIZE = 20 * 1024 * 1024  # per generated message, as the SMTP listener's default
# every message of a request is built before any is stored: this bounds the memory it takes
MAX_REQUEST_SIZE = 256 * 1024 * 1024

_FIRST_HEADER = re.compile(r"[!-9;-~]+:")
_LINE_END = re.compile(r"\r\n|\r|\n")


# --- templates -----------------------------------------------------------------------------

_TEXT = Sandbox(html=False)
_HTML = Sandbox(html=True)

Render = Callable[[Mapping[str, Any]], str]


def _compile(source: str, where: str, dialect: str, *, html: bool = False) -> Render:
    if dialect == "Static":
        return lambda variables: source
    environment = _HTML if html else _TEXT
    try:
        template = environment.from_source(source)
    except jinja2.TemplateSyntaxError as exc:
        raise BadInjectRequest(
            f"{where}: template syntax error at line {exc.lineno}: {exc.message}"
        ) from exc

    def render(variables: Mapping[str, Any]) -> str:
        try:
            text: str = template.render(variables)
        except OverLimit as exc:
            raise BadInjectRequest(f"{where}: template stopped: {exc}") from exc
        except Exception as exc:  # whatever a template raises is the request's problem
            raise BadInjectRequest(f"{where}: template error: {type(exc).__name__}: {exc}") from exc
        return text

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
    local, domain = split_mailbox(email)
    try:
        return Address(
            display_name=_one_line(name or "", where),
            username=unquote_local_part(local),
            domain=domain,
        )
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


def generate(request: InjectRequest, clock: RenderClock | None = None) -> list[Generated]:
    """Every recipient's message; BadInjectRequest for a template or build problem, or a
    recipient's message over the templates' time bound (`clock`, restarted per recipient;
    cancelling it stops the generation)."""
    clock = clock or RenderClock()
    token = CLOCK.set(clock)
    try:
        return _generate(request, clock)
    finally:
        CLOCK.reset(token)


def _generate(request: InjectRequest, clock: RenderClock) -> list[Generated]:
    compiled = _Compiled(request)
    messages: list[Generated] = []
    distinct: dict[bytes, bytes] = {}  # equal contents share one object (and one count)
    total = 0
    for recipient in request.recipients:
        clock.restart()
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
