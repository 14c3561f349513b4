"""Envelope-address syntax: what a mailbox is, which characters are refused, the null sender.

The one set of rules for every way mail comes in: the SMTP listener (`MAIL FROM`/`RCPT TO`
paths, after their angle brackets, parameters and source route are taken off), `kumoclient
inject` and `send`, and the HTTP inject API (envelope sender, recipients, builder `from` and
`reply_to`). Rules (RFC 5321 4.1.2, RFC 6531):
- a mailbox is `local-part@domain`, both parts non-empty, split at the last `@`; the local part
  is either unquoted (no `@`) or one quoted string (`"john doe"@example.com`, `\\` escapes the
  next character), which may hold spaces and `@` (the local part is otherwise the receiving
  server's business: sloppy real-world local parts such as `a..b` pass);
- the domain is a host name (labels of letters, digits, `-`, `_` or non-ASCII characters,
  joined by single dots) or an address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`): no `@`,
  `!`, `%` or other punctuation, which would also break the queue name made from it (SPEC 1);
- refused everywhere: control characters (CR, LF, NUL, TAB, DEL, C1 controls), lone
  surrogates (bytes that were not UTF-8), white space other than the space;
- refused outside the quoted local part: the space, `<` and `>`;
- the null sender `<>` is the empty string: a valid sender, never a recipient;
- non-ASCII is a mailbox's own (SMTPUTF8, RFC 6531): whether a client may send it is the
  protocol's question, not this module's.
A refusal is AddressError with the reason in words; each caller words its own answer around it.
"""

from __future__ import annotations

import re
import unicodedata

from kumoclient.errors import AddressError

NULL_SENDER = ""

CONTROL = "it contains CR, LF, NUL or another control character"
NOT_UTF8 = "it contains bytes that are not UTF-8"
SPACE = "it contains a space outside a quoted local part"
OTHER_SPACE = "it contains white space other than a space"
ANGLE = "it contains < or >"
NOT_MAILBOX = "expected local-part@domain"
DOMAIN = "the domain is neither a host name nor an address literal such as [192.0.2.1]"

_NON_ASCII = r"[^\x00-\x9f\s\ud800-\udfff]"  # printable, not white space, not a surrogate
_LABEL = rf"(?:[A-Za-z0-9_-]|{_NON_ASCII})+"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*|\[[^\[\]\\]+\]")
# the common case, decided by one regular expression: an unquoted local part without white
# space, controls, surrogates, angle brackets or `@`, then `@` and a host name
_LOCAL = r"[^\"@<>\s\x00-\x1f\x7f-\x9f\ud800-\udfff]+"
_PLAIN = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})*")


def check_mailbox(address: str) -> str:
    """`address` when it is a mailbox (a recipient, a header address); else AddressError."""
    if _PLAIN.fullmatch(address) is None:
        _refuse_characters(address)
        parts = _split(address)
        if parts is None:
            raise AddressError(address, NOT_MAILBOX)
        if _DOMAIN.fullmatch(parts[1]) is None:
            raise AddressError(address, DOMAIN)
    return address


def check_sender(address: str) -> str:
    """`address` when it is a mailbox or the null sender `""`; else AddressError."""
    return address if address == NULL_SENDER else check_mailbox(address)


def split_mailbox(address: str) -> tuple[str, str]:
    """The local part (as written, quotes included) and the domain of a mailbox."""
    parts = _split(check_mailbox(address))
    assert parts is not None  # check_mailbox refuses what does not split
    return parts


def unquote_local_part(local: str) -> str:
    """The text of a local part: a quoted string without its quotes and escapes."""
    if len(local) >= 2 and local[0] == local[-1] == '"':
        return re.sub(r"\\(.)", r"\1", local[1:-1])
    return local


def _closing_quote(address: str) -> int:
    """The index of the quote that ends the quoted local part at the start; -1 when none."""
    index = 1
    while index < len(address):
        if address[index] == "\\":
            index += 2
        elif address[index] == '"':
            return index
        else:
            index += 1
    return -1


def _quoted_end(address: str) -> int:
    """The end of the quoted local part (the index just past its closing quote); 0 when the
    address does not start with one; the whole address when the quote is never closed."""
    if not address.startswith('"'):
        return 0
    end = _closing_quote(address)
    return len(address) if end < 0 else end + 1


def _refuse_characters(address: str) -> None:
    quoted_end = _quoted_end(address)
    for index, char in enumerate(address):
        category = unicodedata.category(char)
        if category == "Cc":
            raise AddressError(address, CONTROL)
        if category == "Cs":
            raise AddressError(address, NOT_UTF8)
        if char.isspace() and char != " ":
            raise AddressError(address, OTHER_SPACE)
        if index >= quoted_end and char == " ":
            raise AddressError(address, SPACE)
        if index >= quoted_end and char in "<>":
            raise AddressError(address, ANGLE)


def _split(address: str) -> tuple[str, str] | None:
    """(local part, domain), or None when `address` does not have the shape of a mailbox."""
    quoted_end = _quoted_end(address)
    if quoted_end:
        if quoted_end > len(address) - 2 or address[quoted_end] != "@":
            return None
        local, domain = address[:quoted_end], address[quoted_end + 1 :]
    else:
        local, _, domain = address.partition("@")
    if not local or not domain or "@" in domain:
        return None
    return local, domain
