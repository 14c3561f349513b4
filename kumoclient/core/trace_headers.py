"""The trace headers the SMTP listener adds to a message (`trace_headers`): a `Received:`
header (RFC 5321 4.4) before the reception policy runs, and the supplemental header after it.

`Received:` names the client's HELO/EHLO name and address, the listener's host name and
address, the protocol (RFC 3848: `SMTP` after HELO, `ESMTP`, `ESMTPS` under TLS, `ESMTPA` /
`ESMTPSA` once authenticated) with the TLS version and cipher, the message id, the recipient
and the date. Text from the client is shown as printable ASCII (`?` for anything else).

The supplemental header (`X-KumoRef` unless renamed) is the base64 of a JSON object: a marker
(`"_@_": "\\_/"`, which core.arf_report looks for in the message a complaint returns), the
recipient and the meta values named in `include_meta_names` that are set; folded at 76 columns.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MARKER = {"_@_": "\\_/"}
_FOLD = 76


@dataclass(frozen=True, slots=True)
class Hop:
    """What a `Received:` header says of a session."""

    helo: str | None  # the HELO/EHLO name (None: none was given)
    extended: bool  # EHLO rather than HELO
    peer: str  # the client's address
    hostname: str  # the listener's host name
    local: str  # the listener's address
    tls: tuple[str, str] | None = None  # (protocol version, cipher)
    authenticated: bool = False


def _shown(text: str) -> str:
    if text.isascii() and text.isprintable() and "(" not in text and ")" not in text:
        return text  # the usual name or address: nothing to replace
    return "".join(c if " " <= c <= "~" and c not in "()" else "?" for c in text)


def protocol(hop: Hop) -> str:
    """RFC 3848's name of the session's protocol."""
    if not hop.extended:
        return "SMTP"
    return "ESMTP" + ("S" if hop.tls is not None else "") + ("A" if hop.authenticated else "")


@functools.lru_cache(maxsize=4)
def _date(second: int) -> str:
    """RFC 5322's date of a second (cached: the messages of one second share it)."""
    return email.utils.format_datetime(datetime.datetime.fromtimestamp(second, datetime.UTC))


def received(hop: Hop, message_id: str, recipient: str, now: float) -> bytes:
    """The `Received:` header of one message, with its CRLF."""
    date = _date(int(now))
    tls = f" ({_shown(hop.tls[0])}:{_shown(hop.tls[1])})" if hop.tls is not None else ""
    helo = _shown(hop.helo) if hop.helo is not None else "unknown"
    text = (
        f"Received: from {helo} ({hop.peer})\r\n"
        f"\tby {_shown(hop.hostname)} (kumoclient {hop.local})\r\n"
        f"\twith {protocol(hop)}{tls} id {message_id}\r\n"
        f"\tfor <{recipient}>; {date}\r\n"
    )
    return text.encode("utf-8")


def supplemental(
    name: str, recipients: Sequence[str], meta: Mapping[str, object], names: Sequence[str]
) -> bytes:
    """The supplemental header of a message to `recipients` (one: a string, else a list),
    with the `names` of `meta` that are set; with its CRLF."""
    payload: dict[str, object] = dict(MARKER)
    payload["recipient"] = recipients[0] if len(recipients) == 1 else list(recipients)
    for key in names:
        if key in meta:
            payload[key] = meta[key]
    encoded = base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()
    first = _FOLD - len(name) - 2
    lines = [encoded[:first]]
    lines += [encoded[i : i + _FOLD - 1] for i in range(first, len(encoded), _FOLD - 1)]
    return (f"{name}: " + "\r\n ".join(lines) + "\r\n").encode("ascii")
