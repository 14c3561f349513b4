"""AUTH on the listener (the rules are core/smtp_auth.py's): the command, the exchange of
responses, and the policy's decision (`smtp_server_auth_plain`, for PLAIN and LOGIN alike).

Once admitted, the connection's `authz_id` and `authn_id` metadata and its AuthInfo name the
client; whether it may then relay is the listener domains' word (`relay_from_authz` in the
`listener_domains` helper). A refusal waits longer with each failure from the same client
address. The credentials go to the policy and nowhere else: not into a reply, a log line or
the command a reply is said to answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kumoclient import logs
from kumoclient.core.smtp_auth import (
    PASSWORD_PROMPT,
    PLAIN_PROMPT,
    USERNAME_PROMPT,
    Credentials,
    failure_delay,
    login_text,
    parse_auth,
    plain,
    shown,
)
from kumoclient.errors import CommandError
from kumoclient.listener import replies

if TYPE_CHECKING:
    from kumoclient.listener.session import Session

log = logs.get_logger(__name__)

EVENT = "smtp_server_auth_plain"


@dataclass(slots=True)
class Exchange:
    """An AUTH waiting for the client's response: its mechanism, and LOGIN's username."""

    mechanism: str
    username: str | None = None


def command_name(arg: str) -> str:
    """What an AUTH command line is called in replies' records: never its response."""
    mechanism = arg.partition(" ")[0].upper()
    return f"AUTH {shown(mechanism)}" if mechanism else "AUTH"


def auth(session: Session, arg: str) -> None:
    if session.helo is None or not session.extended:
        raise CommandError("503 5.5.1 Error: send EHLO first")
    if session.conn.authenticated is not None:
        raise CommandError("503 5.5.1 Error: already authenticated")
    if session.mail is not None:
        raise CommandError("503 5.5.1 Error: AUTH not permitted inside a transaction")
    mechanism, initial = parse_auth(arg)
    if EVENT not in session.handled:
        raise CommandError("502 5.5.1 Error: authentication not available")
    if not session.secure and not session.keys.config.allow_smtp_auth_without_tls:
        raise CommandError("538 5.7.11 Encryption required for requested authentication mechanism")
    if mechanism == "PLAIN":
        if initial is None:
            session.sasl = Exchange(mechanism)
            session.say(PLAIN_PROMPT)
        else:
            session.wait_for(verify(session, plain(initial)))
    elif initial is None:
        session.sasl = Exchange(mechanism)
        session.say(USERNAME_PROMPT)
    else:
        session.sasl = Exchange(mechanism, login_text(initial))
        session.say(PASSWORD_PROMPT)


def respond(session: Session, line: str) -> bool:
    """The client's response in an AUTH exchange (line_step's, for one line)."""
    exchange: Exchange = session.sasl
    session.command = f"AUTH {exchange.mechanism}"
    try:
        if exchange.mechanism == "PLAIN":
            session.sasl = None
            session.wait_for(verify(session, plain(line)))
        elif exchange.username is None:
            exchange.username = login_text(line)
            session.say(PASSWORD_PROMPT)
        else:
            session.sasl = None
            username = exchange.username
            session.wait_for(verify(session, Credentials(username, username, login_text(line))))
    except CommandError as error:
        session.sasl = None
        replies.refuse(session, error)
    return True


async def verify(session: Session, credentials: Credentials) -> None:
    """Ask the policy; `235`, or `535` after the client's failure delay."""
    listener, conn = session.listener, session.conn
    who = await listener.events.auth_plain(credentials, conn)
    if who is None:
        failures = listener.failed_auth(session.peer)
        log.info("smtp authentication failed", peer=session.peer, failures=failures)
        await asyncio.sleep(failure_delay(failures))
        raise CommandError("535 5.7.8 Authentication credentials invalid")
    listener.authenticated(session.peer)
    conn.authenticated = who
    conn.domains.clear()  # the listener domains may answer otherwise for an authzid
    conn.meta["authz_id"], conn.meta["authn_id"] = who.authz, who.authn
    conn.auth["identities"] = [
        {"identity": identity, "context": context} for identity, context in who.identities
    ]
    conn.auth["groups"] = list(who.groups)
    session.say("235 2.7.0 Authentication successful")
