"""SMTP server decisions without I/O: command lines, paths and parameters, message content.

Rules (RFC 5321, RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8, SPEC 3 and 8):
- a command is a verb, then an optional argument after one or more spaces; verbs are
  case-insensitive;
- `MAIL FROM:<path> [params]` and `RCPT TO:<path> [params]`; the path may lack its angle
  brackets (as many clients send it), and a source route (`<@a,@b:user@d>`) is dropped;
  `<>` is the null sender (MAIL only);
- the address in the path follows core/address.py (a mailbox, or `<>` as the sender); one that
  does not is refused with the reason (`553 5.1.7` sender, `553 5.1.3` recipient); a non-ASCII
  path needs the `SMTPUTF8` parameter (`553 5.6.7`);
- MAIL parameters: `SIZE=n` (over the limit: `552 5.3.4`), `BODY=7BIT|8BITMIME`, `SMTPUTF8`;
  anything else is `555 5.5.4`; RCPT takes no parameters;
- content: dot-stuffing is undone; NUL bytes (`554 5.6.0`), a line over the listener's
  `line_length_hard_limit` (998 octets) before its CRLF (`500 5.5.2`), non-ASCII header bytes
  without SMTPUTF8 or invalid UTF-8 headers with it (`554 5.6.7`) are refused; a bare LF or a
  bare CR is refused (`554 5.6.11`, the SMTP smuggling defence) with `invalid_line_endings =
  'Deny'`, taken as it is with `'Allow'`, and made CRLF with `'Fix'` (after the dot-stuffing is
  undone, so a bare `\n.\n` never ends a message);
- replies: `NNN text` lines; several lines are `NNN-text` but the last (`split_reply` and
  `format_reply` convert to and from the code and `\n`-separated text that
  `smtp_server_rewrite_response` sees).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kumoclient.configs import LineEndings
from kumoclient.core.address import check_mailbox, check_sender
from kumoclient.errors import AddressError, CommandError

# the longest line, CRLF included (RFC 5321 4.5.3.1.6: 1,000 octets for text lines; command
# lines may be longer with extensions, and we allow the same)
MAX_LINE = 1000

_SIZE = re.compile(r"[0-9]{1,20}")


@dataclass(frozen=True, slots=True)
class MailFrom:
    """A parsed `MAIL FROM`: the sender (`""` for `<>`), and what its parameters declared."""

    address: str
    smtputf8: bool = False
    size: int | None = None


def split_command(line: str) -> tuple[str, str]:
    """The upper-cased verb and its argument (`""` when there is none)."""
    verb, _, arg = line.partition(" ")
    return verb.upper(), arg.strip()


def _path(arg: str, keyword: str) -> tuple[str, list[str]]:
    """The address in `KEYWORD:<address> params` and the parameter words."""
    if arg[: len(keyword)].upper() != keyword:
        raise CommandError(f"501 5.5.4 Syntax: {keyword} <address>")
    rest = arg[len(keyword) :].lstrip(" ")
    if rest.startswith("<"):
        end = rest.find(">")
        if end < 0:
            raise CommandError(f"501 5.5.4 Syntax: {keyword} <address>")
        address, params = rest[1:end], rest[end + 1 :].split()
    else:
        words = rest.split()
        if not words:
            raise CommandError(f"501 5.5.4 Syntax: {keyword} <address>")
        address, params = words[0], words[1:]
    if address.startswith("@") and ":" in address:  # a source route: RFC 5321 C
        address = address.partition(":")[2]
        if not address:
            raise CommandError(f"501 5.5.4 Syntax: {keyword} <address>")
    return address, params


def parse_mail(arg: str, *, extended: bool, size_limit: int | None) -> MailFrom:
    """`MAIL` after its verb; CommandError with the reply when it is refused."""
    address, params = _path(arg, "FROM:")
    if params and not extended:
        raise CommandError("501 5.5.4 Parameters need EHLO")
    smtputf8, size = False, None
    for param in params:
        key, _, value = param.partition("=")
        key = key.upper()
        if key == "SIZE" and _SIZE.fullmatch(value):
            size = int(value)
            if size_limit is not None and size > size_limit:
                raise CommandError("552 5.3.4 Message size exceeds the fixed maximum size")
        elif key == "BODY" and value.upper() in {"7BIT", "8BITMIME"}:
            pass  # 8-bit content is taken as it is either way
        elif key == "SMTPUTF8" and not value:
            smtputf8 = True
        else:
            raise CommandError(f"555 5.5.4 MAIL parameter not recognized: {param}")
    try:
        check_sender(address)
    except AddressError as exc:
        raise CommandError(f"553 5.1.7 Sender address is not valid: {exc.reason}") from exc
    if not smtputf8 and not address.isascii():
        raise CommandError("553 5.6.7 Non-ASCII sender address requires SMTPUTF8")
    return MailFrom(address, smtputf8, size)


def parse_rcpt(arg: str, *, smtputf8: bool) -> str:
    """`RCPT` after its verb: the recipient; CommandError with the reply when refused."""
    address, params = _path(arg, "TO:")
    if params:
        raise CommandError(f"555 5.5.4 RCPT parameter not recognized: {params[0]}")
    try:
        check_mailbox(address)
    except AddressError as exc:
        raise CommandError(
            f"553 5.1.3 Recipient address is not a valid mailbox: {exc.reason}"
        ) from exc
    if not smtputf8 and not address.isascii():
        raise CommandError("553 5.6.7 Non-ASCII recipient address requires SMTPUTF8")
    return address


def has_long_line(data: bytes | bytearray, limit: int = MAX_LINE) -> bool:
    """Whether some line of `data` is `limit` octets or more with its line end (MAX_LINE:
    over 998 octets before its CRLF)."""
    # the LF ends a line: `limit` octets before it, CR included, are one too many. Without
    # a copy of the data (splitting it into lines doubled the memory a large message takes):
    # a run of `limit` octets with no LF covers a whole block of half that, so only the
    # blocks with no LF are looked at closer.
    step = max(limit // 2, 1)
    for start in range(0, len(data) - step + 1 if len(data) >= limit else 0, step):
        if data.find(b"\n", start, start + step) == -1:
            end = data.find(b"\n", start)
            line = (len(data) if end == -1 else end) - (data.rfind(b"\n", 0, start) + 1)
            if line >= limit:
                return True
    return False


def unstuff(data: bytes) -> bytes:
    """The content of a DATA section (terminator removed): a leading dot of each line goes."""
    if data.startswith(b"."):
        data = data[1:]
    if b"\r\n." in data:
        data = data.replace(b"\r\n.", b"\r\n")
    return data


_LINE_END = re.compile(rb"\r\n|\r|\n")


def fix_line_endings(content: bytes) -> bytes:
    """`content` with every bare CR and bare LF made CRLF."""
    return _LINE_END.sub(b"\r\n", content)


def line_ending_problem(content: bytes) -> str | None:
    """The reply for a bare LF or bare CR in `content` (`invalid_line_endings = 'Deny'`)."""
    line_ends = content.count(b"\r\n")  # counting: a tenth of a look-behind regex's time
    if content.count(b"\n") != line_ends:
        return "554 5.6.11 Message contains a bare LF (lines must end with CRLF)"
    if content.count(b"\r") != line_ends:  # "\r.\r" ends data for some receivers
        return "554 5.6.11 Message contains a bare CR (lines must end with CRLF)"
    return None


def content_problem(
    content: bytes, smtputf8: bool, endings: LineEndings = LineEndings.DENY
) -> str | None:
    """The reply for content that must be refused, or None (`endings` other than DENY: bare
    CR and LF are not a problem)."""
    if b"\x00" in content:
        return "554 5.6.0 Message contains NUL bytes"
    if endings is LineEndings.DENY:
        problem = line_ending_problem(content)
        if problem is not None:
            return problem
    end = content.find(b"\r\n\r\n")
    headers = content[:end] if end >= 0 else content
    if not headers.isascii():
        if not smtputf8:
            return "554 5.6.7 Non-ASCII header requires SMTPUTF8"
        try:
            headers.decode("utf-8")
        except UnicodeDecodeError:
            return "554 5.6.7 Header is not valid UTF-8"
    return None


def split_reply(reply: str) -> tuple[int, str]:
    """The code and the text (lines joined by `\\n`) of a reply as the listener writes it."""
    lines = reply.split("\r\n")
    return int(lines[0][:3]), "\n".join(line[4:] for line in lines)


def format_reply(code: int, text: str) -> str:
    """A reply of `code` and `text` (`\\n` between lines), every line but the last `NNN-`."""
    lines = text.split("\n") if text else [""]
    last = len(lines) - 1
    return "\r\n".join(f"{code}{'-' if i < last else ' '}{line}" for i, line in enumerate(lines))
