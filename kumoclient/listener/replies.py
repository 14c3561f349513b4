"""Replies through the policy's `smtp_server_rewrite_response` handler, when it has one: each
reply's code and text (lines joined by `\\n`, without their `NNN-` prefixes) and the command
it answers (the command line; `DATA` for the reply after the data; `AUTH PLAIN` / `AUTH
LOGIN`, never the credentials, for those of an authentication; nil for the greeting and the
replies nobody asked for) are handed to it, and what it returns is written. A reply it turns
into a 421 ends the session, as KumoMTA does. Also the one place a refusal is answered
(`refuse`: `kumo.reject` / `kumo.disconnect`'s modes)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kumoclient.core.smtp_server import format_reply, split_reply
from kumoclient.errors import CommandError

if TYPE_CHECKING:
    from kumoclient.listener.session import Session

REWRITE = "smtp_server_rewrite_response"


def rewriting(session: Session) -> bool:
    """True when the replies go through the policy before they are written."""
    return REWRITE in session.handled


async def write(session: Session) -> bool:
    """Rewrite and write every reply gathered (those added meanwhile too); True when one was
    made a 421 (the session must end)."""
    events = session.listener.events
    ends = False
    while session.out:
        out, answered = session.out, session.answered
        session.out, session.answered = [], []
        written: list[str] = []
        for reply, command in zip(out, answered, strict=True):
            code, text = split_reply(reply)
            new_code, new_text = await events.rewrite_response(code, text, command, session.conn)
            changed = (new_code, new_text) != (code, text)
            written.append(format_reply(new_code, new_text.replace("\r", "")) if changed else reply)
            ends = ends or new_code == 421
        if session.transport is not None and not session.ended:
            session.transport.write(("\r\n".join(written) + "\r\n").encode())
    return ends


async def write_then_go_on(session: Session) -> None:
    """Write the rewritten replies; then close (a 421, or a session closing) or go on."""
    if await write(session) or session.closing:
        session.shut()
        return
    session.resume()


def refuse(session: Session, error: CommandError) -> None:
    """Answer with a refusal; end the session when its disconnect mode says so."""
    session.say(error.reply)
    is_421 = error.reply.startswith("421")
    if error.disconnect == "FollowWith421" and not is_421:
        session.say(f"421 4.3.0 {session.keys.hostname} disconnecting due to previous error")
    if is_421 or error.disconnect in ("FollowWith421", "ForceDisconnect"):
        session.close()
