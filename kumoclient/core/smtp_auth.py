"""SMTP AUTH on the listener (RFC 4954): the `AUTH` command, the PLAIN (RFC 4616) and LOGIN
mechanisms' responses, and the delay that answers failures.

Rules:
- `AUTH <mechanism> [initial-response]`; PLAIN and LOGIN only (`504 5.5.4` otherwise); a
  client says it once per session (`503 5.5.1`), outside a transaction (`503 5.5.1`); without
  TLS it is refused (`538 5.7.11`) unless the listener allows it in clear;
- a response line is base64 (`501 5.5.2` otherwise), `*` cancels (`501 5.7.0`);
- PLAIN: `[authz] NUL authc NUL password`, UTF-8; an empty authz is the authc;
- LOGIN: the server asks `Username:` then `Password:` (base64 prompts); the authz is the
  username;
- the policy decides (`smtp_server_auth_plain`): `235 2.7.0` or `535 5.7.8`; each failure
  from a client address makes its next `535` wait longer (`failure_delay`) against guessing.
The credentials never appear in a reply, a log line or a record: the command a reply answers
is named `AUTH PLAIN` / `AUTH LOGIN`, never with its response.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from kumoclient.errors import CommandError

MECHANISMS = ("PLAIN", "LOGIN")
USERNAME_PROMPT = "334 " + base64.b64encode(b"Username:").decode()
PASSWORD_PROMPT = "334 " + base64.b64encode(b"Password:").decode()
PLAIN_PROMPT = "334 "
MAX_RESPONSE = 16384  # octets of one response line (KumoMTA's limit too)

FAILURE_DELAY = 1.0  # seconds before the 535 of a client's first failure
FAILURE_DELAY_MAX = 8.0  # the longest wait


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a client presented: the identity it acts as, the one it proves, its password."""

    authz: str
    authc: str
    password: str

    def __repr__(self) -> str:  # never the password, wherever an object is shown
        return f"Credentials(authz={self.authz!r}, authc={self.authc!r})"


AUTHZ_CONTEXT = "SmtpAuthPlainAuthorization"
AUTHN_CONTEXT = "SmtpAuthPlainAuthentication"


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A client the policy admitted: the identity it acts as (`authz_id`), the one it proved
    (`authn_id`), and the session's AuthInfo identities `(identity, context)` and groups."""

    authz: str
    authn: str
    identities: tuple[tuple[str, str], ...]
    groups: tuple[str, ...] = ()


def admitted(credentials: Credentials) -> Authenticated:
    """A `true` answer: the presented identities."""
    return Authenticated(
        credentials.authz,
        credentials.authc,
        ((credentials.authz, AUTHZ_CONTEXT), (credentials.authc, AUTHN_CONTEXT)),
    )


def admitted_as(identities: list[tuple[str, str]], groups: list[str]) -> Authenticated:
    """An AuthInfo answer, reconciled as KumoMTA does: the authn is the identity of context
    SmtpAuthPlainAuthentication, else the first; the authz that of context
    SmtpAuthPlainAuthorization, else the authn. ValueError when `identities` is empty."""
    if not identities:
        raise ValueError("an AuthInfo with an empty identities list is not supported")
    authn = next((i for i, context in identities if context == AUTHN_CONTEXT), identities[0][0])
    authz = next((i for i, context in identities if context == AUTHZ_CONTEXT), authn)
    return Authenticated(authz, authn, tuple(identities), tuple(groups))


def parse_auth(arg: str) -> tuple[str, str | None]:
    """The mechanism (upper case) and the initial response of `AUTH` after its verb."""
    mechanism, _, initial = arg.partition(" ")
    mechanism = mechanism.upper()
    if not mechanism:
        raise CommandError("501 5.5.4 Syntax: AUTH mechanism [initial-response]")
    if mechanism not in MECHANISMS:
        raise CommandError(f"504 5.5.4 AUTH {shown(mechanism)} not supported")
    initial = initial.strip()
    return mechanism, initial or None


def shown(text: str) -> str:
    """Text of the client's, safe to put in a reply."""
    return "".join(c if c.isprintable() else "?" for c in text[:32])


def decode_response(line: str) -> bytes:
    """A response line's bytes; CommandError for `*` and for what is not base64."""
    if line == "*":
        raise CommandError("501 5.7.0 AUTH cancelled by client")
    if line == "=":  # RFC 4954: an empty initial response
        return b""
    try:
        return base64.b64decode(line.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CommandError("501 5.5.2 Invalid base64 in AUTH response") from None


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("501 5.5.2 Invalid UTF-8 in AUTH response") from None


def plain(line: str) -> Credentials:
    """The credentials of a PLAIN response (RFC 4616)."""
    fields = decode_response(line).split(b"\x00")
    if len(fields) != 3:
        raise CommandError("501 5.5.2 Invalid PLAIN response")
    authz, authc, password = (_text(field) for field in fields)
    if not authc:
        raise CommandError("501 5.5.2 Invalid PLAIN response")
    return Credentials(authz or authc, authc, password)


def login_text(line: str) -> str:
    """The username or password of a LOGIN response."""
    return _text(decode_response(line))


def failure_delay(failures: int) -> float:
    """Seconds to wait before answering a client's failure number `failures` (1, 2, ...):
    doubling from FAILURE_DELAY up to FAILURE_DELAY_MAX."""
    if failures <= 0:
        return 0.0
    return min(FAILURE_DELAY * 2.0 ** min(failures - 1, 16), FAILURE_DELAY_MAX)
