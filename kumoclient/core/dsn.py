"""Delivery status notifications (RFC 3464) for messages that Bounced or Expired (SPEC 2.5).

Pure and synchronous: `build_dsn` returns the complete RFC 5322 message as bytes with CRLF line
endings, ready to be spooled and sent to the original envelope sender with a null envelope
sender (`MAIL FROM:<>`). `should_generate` is False for a null sender, so bounces never loop.

The report is `multipart/report; report-type=delivery-status` (RFC 6522) with three parts:
1. `text/plain`: a human explanation naming the recipient and the server's reply in its
   readable one-line form (lines joined by spaces, the rewrite note kept);
2. `message/delivery-status`: `Reporting-MTA`, `Arrival-Date`, then for the recipient
   `Original-Recipient`, `Final-Recipient`, `Action: failed`, `Status`, `Remote-MTA` (when
   known), `Diagnostic-Code: smtp; <reply>` and `Last-Attempt-Date` (when known);
3. the original message's header block only (`text/rfc822-headers`). The body is never returned:
   it may be large and it may hold data the reporting MTA should not echo back (RFC 3462 allows
   returning headers only). The part is left out when the message has no header block.

`Status` is the reply's enhanced code with its class forced to 5, since the disposition is a
failure: a reply rewritten by policy from `452 4.2.2` to `500` reports `5.2.2`. Without an
enhanced code it is `5.0.0` (`5.4.7` for an Expiration).

Safety: every value taken from the message, the envelope or the remote server has its CR, LF
and other control characters replaced by spaces before it is written, so it cannot start a
header line or a MIME boundary line; long fields are folded. The `message/delivery-status` part
stays 7-bit ASCII: a non-ASCII reply text is backslash-escaped there (it stays readable in part
1).

Internationalised (SMTPUTF8) addresses follow RFC 6533: an ASCII address is written as
`rfc822; addr`; a non-ASCII one as `utf-8; addr` in the 7-bit `utf-8-addr-xtext` form
(`\\x{HEX}` for every non-ASCII character and for `+`, `=`, `\\`), which keeps the exact address
recoverable. The `To:` header and part 1 carry the address as UTF-8 (RFC 6532; part 1 is
quoted-printable then). An original header block that is not ASCII is returned as
`message/global-headers` (RFC 6533) with 8-bit transfer encoding.
"""

from __future__ import annotations

import re
import secrets
import textwrap
from datetime import UTC, datetime
from email.charset import QP, Charset
from email.utils import format_datetime, make_msgid
from typing import Literal

from kumoclient.core.reply import single_line
from kumoclient.records import EnhancedCode, Reply

DsnKind = Literal["Bounce", "Expiration"]
KINDS: tuple[DsnKind, ...] = ("Bounce", "Expiration")

SUBJECTS: dict[DsnKind, str] = {
    "Bounce": "Undelivered Mail Returned to Sender",
    "Expiration": "Delivery expired: Undelivered Mail Returned to Sender",
}
FROM_NAME = "Mail Delivery System"
CRLF = "\r\n"

_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_HEADER_LINE = re.compile(rb"[!-9;-~]+[ \t]*:|[ \t]")
_MAX_LINE = 998  # RFC 5322 2.1.1
_FOLD_AT = 78


def should_generate(sender: str) -> bool:
    """False for the null envelope sender (`""` or `"<>"`): a DSN is never sent to it."""
    return _bare(sender) != ""


def build_dsn(
    *,
    original: bytes,
    sender: str,
    recipient: str,
    kind: DsnKind,
    reply: Reply,
    reporting_mta: str,
    arrival: datetime,
    remote_mta: str | None,
    attempted: datetime | None = None,
    now: datetime | None = None,
) -> bytes:
    """The DSN reporting that `original` could not be delivered to `recipient`.

    `sender` is the original envelope sender (the DSN's `To:`); `reply` is the final, possibly
    rewritten, reply of the Bounce or Expiration record; `reporting_mta` is this host's name;
    `arrival` is when the message was received, `attempted` when delivery was last tried and
    `now` the DSN's `Date:` (default: the current time). Naive datetimes are taken as UTC.
    Raises ValueError for a null sender or an unknown `kind`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown DSN kind {kind!r} (expected one of {', '.join(KINDS)})")
    if not should_generate(sender):
        raise ValueError("no DSN is generated for the null sender <>")
    to = _bare(sender)
    rcpt = _clean(recipient)
    mta = _clean(reporting_mta) or "localhost"
    remote = _clean(remote_mta) if remote_mta is not None else ""
    diagnostic = _clean(single_line(reply, " "))
    date = _utc(now if now is not None else datetime.now(UTC))

    text = _explanation(
        kind=kind, mta=mta, rcpt=rcpt, remote=remote, diagnostic=diagnostic, arrival=_utc(arrival)
    )
    status = _status_block(
        mta=mta,
        rcpt=rcpt,
        status=status_code(reply, kind),
        remote=remote,
        diagnostic=diagnostic,
        arrival=_utc(arrival),
        attempted=attempted,
    )
    parts: list[tuple[list[str], bytes]] = [_text_part(text), (_status_headers(), status)]
    headers = header_block(original)
    if headers:
        parts.append(_headers_part(headers))
    return _report(parts, to=to, mta=mta, subject=SUBJECTS[kind], date=date)


def _report(
    parts: list[tuple[list[str], bytes]], *, to: str, mta: str, subject: str, date: datetime
) -> bytes:
    """The whole `multipart/report` message around its parts."""
    eight_bit = any(not body.isascii() for _, body in parts)
    boundary = _boundary([body for _, body in parts])
    head = [
        f"From: {FROM_NAME} <MAILER-DAEMON@{mta}>",
        f"To: <{to}>",
        f"Subject: {subject}",
        f"Date: {format_datetime(date)}",
        f"Message-ID: {make_msgid(domain=mta)}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n boundary="{boundary}"',
    ]
    if eight_bit:
        head.append("Content-Transfer-Encoding: 8bit")
    out = [_lines(head), b"\r\n", b"This is a MIME-formatted delivery status notification.\r\n"]
    for part_headers, body in parts:
        out += [f"\r\n--{boundary}\r\n".encode(), _lines(part_headers), b"\r\n", body]
    out.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(out)


def status_code(reply: Reply, kind: DsnKind) -> EnhancedCode:
    """The DSN `Status`: the reply's enhanced code in class 5, else 5.0.0 (5.4.7 if expired)."""
    code = reply.enhanced_code
    if code is None:
        return EnhancedCode(5, 4, 7) if kind == "Expiration" else EnhancedCode(5, 0, 0)
    return EnhancedCode(5, code.subject, code.detail)


def header_block(original: bytes) -> bytes:
    """The header lines of `original` with CRLF endings, up to the blank line; never the body.

    Stops at the first line that is neither a header field nor a continuation, so a message
    without a header/body separator does not leak its body either.
    """
    lines: list[bytes] = []
    for line in _LINE_END.split(original):
        if not line or _HEADER_LINE.match(line) is None:
            break
        if line[:1] in b" \t" and not lines:
            break  # a continuation with nothing to continue
        lines.append(line + b"\r\n")
    return b"".join(lines)


def address_field(address: str) -> str:
    """`rfc822; addr`, or RFC 6533 `utf-8; addr` in its 7-bit xtext form for a non-ASCII one."""
    clean = _clean(address)
    if clean.isascii():
        return f"rfc822; {clean}"
    return "utf-8; " + "".join(
        ch if "!" <= ch <= "~" and ch not in "+=\\" else f"\\x{{{ord(ch):X}}}" for ch in clean
    )


# --- parts ---


def _explanation(
    *, kind: DsnKind, mta: str, rcpt: str, remote: str, diagnostic: str, arrival: datetime
) -> str:
    if kind == "Expiration":
        what = (
            "Your message could not be delivered to the following recipient before it "
            "expired; delivery has been abandoned:"
        )
    else:
        what = "Your message could not be delivered to the following recipient:"
    said = f"The mail server {remote} answered:" if remote else "The reason given was:"
    paragraphs = [
        f"This is the mail delivery system at {mta}.",
        textwrap.fill(what, 76),
        _indent(rcpt),
        said,
        _indent(diagnostic),
        textwrap.fill(
            f"The message was received on {format_datetime(arrival)}. Its headers are "
            "attached; its body is not returned.",
            76,
        ),
    ]
    return "\n\n".join(paragraphs) + "\n"


def _indent(text: str) -> str:
    return textwrap.fill(
        text,
        76,
        initial_indent="    ",
        subsequent_indent="    ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _text_part(text: str) -> tuple[list[str], bytes]:
    """7-bit when ASCII with short lines, else UTF-8 quoted-printable (soft line breaks)."""
    if text.isascii() and all(len(line) <= _MAX_LINE for line in text.split("\n")):
        headers = [
            "Content-Description: Notification",
            'Content-Type: text/plain; charset="us-ascii"',
            "Content-Transfer-Encoding: 7bit",
        ]
        return headers, _crlf(text).encode("ascii")
    charset = Charset("utf-8")
    charset.body_encoding = QP
    headers = [
        "Content-Description: Notification",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
    ]
    return headers, _crlf(charset.body_encode(text) or "").encode("ascii")


def _status_headers() -> list[str]:
    return [
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "Content-Transfer-Encoding: 7bit",
    ]


def _status_block(
    *,
    mta: str,
    rcpt: str,
    status: EnhancedCode,
    remote: str,
    diagnostic: str,
    arrival: datetime,
    attempted: datetime | None,
) -> bytes:
    per_message = [
        _field("Reporting-MTA", f"dns; {_ascii(mta)}"),
        _field("Arrival-Date", format_datetime(arrival)),
    ]
    per_recipient = [
        _field("Original-Recipient", address_field(rcpt)),
        _field("Final-Recipient", address_field(rcpt)),
        _field("Action", "failed"),
        _field("Status", str(status)),
    ]
    if remote:
        per_recipient.append(_field("Remote-MTA", f"dns; {_ascii(remote)}"))
    per_recipient.append(_field("Diagnostic-Code", f"smtp; {_ascii(diagnostic)}"))
    if attempted is not None:
        per_recipient.append(_field("Last-Attempt-Date", format_datetime(_utc(attempted))))
    return (CRLF.join(per_message) + CRLF + CRLF + CRLF.join(per_recipient) + CRLF).encode("ascii")


def _headers_part(headers: bytes) -> tuple[list[str], bytes]:
    if headers.isascii():
        return [
            "Content-Description: Undelivered message headers",
            "Content-Type: text/rfc822-headers",
            "Content-Transfer-Encoding: 7bit",
        ], headers
    return [
        "Content-Description: Undelivered message headers",
        "Content-Type: message/global-headers",
        "Content-Transfer-Encoding: 8bit",
    ], headers


# --- helpers ---


def _bare(address: str) -> str:
    """An envelope address without surrounding space and angle brackets, on one line."""
    clean = _clean(address)
    if clean.startswith("<") and clean.endswith(">"):
        clean = clean[1:-1].strip()
    return clean


def _clean(text: str) -> str:
    """`text` on one line: every run of control characters (CR, LF, TAB...) becomes a space."""
    return _CONTROLS.sub(" ", text).strip()


def _ascii(text: str) -> str:
    """7-bit form for the delivery-status part: non-ASCII characters backslash-escaped."""
    return text.encode("ascii", "backslashreplace").decode("ascii")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _field(name: str, value: str) -> str:
    """`Name: value`, folded at spaces near 78 columns and never over 998 characters a line."""
    lines: list[str] = []
    current = f"{name}:"
    has_word = False
    for word in value.split(" "):
        if has_word and len(current) + 1 + len(word) > _FOLD_AT:
            lines.append(current)
            current = ""
        current += " " + word
        has_word = True
    lines.append(current)
    out: list[str] = []
    for line in lines:
        rest = line
        while len(rest) > _MAX_LINE:  # one word too long for a line: split it
            out.append(rest[:_MAX_LINE])
            rest = " " + rest[_MAX_LINE:]
        out.append(rest)
    return CRLF.join(out)


def _lines(headers: list[str]) -> bytes:
    return "".join(h + CRLF for h in headers).encode("utf-8")


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", CRLF)


def _boundary(bodies: list[bytes]) -> str:
    while True:
        boundary = f"=_kumoclient-dsn-{secrets.token_hex(12)}"
        if not any(boundary.encode() in body for body in bodies):
            return boundary
