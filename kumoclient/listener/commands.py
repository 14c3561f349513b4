"""The SMTP commands of a session: each checks its place in the dialogue and its argument,
then answers (a CommandError carries a refusal's reply), or hands its answer to the policy
(asks.py) when the policy has a handler for its event; the decisions on addresses and
parameters are core/smtp_server.py's, AUTH is auth.py's."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from kumoclient import logs
from kumoclient.core.listener_domain import RELAY
from kumoclient.core.smtp_server import MAX_LINE, MailFrom, parse_mail, parse_rcpt, split_command
from kumoclient.errors import CommandError
from kumoclient.listener import asks, auth, replies

if TYPE_CHECKING:
    from kumoclient.listener.session import Session

log = logs.get_logger(__name__)

Command = Callable[["Session", str], None]


def _helo(session: Session, arg: str, *, extended: bool) -> None:
    verb = "EHLO" if extended else "HELO"
    if not arg:
        raise CommandError(f"501 5.5.4 Syntax: {verb} hostname")
    session.reset()
    if asks.EHLO in session.handled:
        session.wait_for(asks.helo_asked(session, arg, extended=extended))
        return
    asks.greeted(session, arg, extended)
    if extended:
        session.say(asks.default_ehlo(session))
    else:
        session.say(f"250 {session.keys.hostname}")


def helo(session: Session, arg: str) -> None:
    _helo(session, arg, extended=False)


def ehlo(session: Session, arg: str) -> None:
    _helo(session, arg, extended=True)


def mail(session: Session, arg: str) -> None:
    if session.helo is None:
        raise CommandError("503 5.5.1 Error: send HELO first")
    if session.mail is not None:
        raise CommandError("503 5.5.1 Error: nested MAIL command")
    size_limit = session.keys.size_limit
    mail_from = parse_mail(arg, extended=session.extended, size_limit=size_limit)
    if asks.MAIL_FROM in session.handled:
        session.wait_for(asks.mail_asked(session, mail_from))
        return
    session.mail = mail_from
    session.say("250 2.1.0 OK")


def _transaction(session: Session) -> MailFrom:
    """The open transaction's MAIL FROM (CommandError 503 when there is none)."""
    if session.helo is None:
        raise CommandError("503 5.5.1 Error: send HELO first")
    if session.mail is None:
        raise CommandError("503 5.5.1 Error: need MAIL command")
    return session.mail


def rcpt(session: Session, arg: str) -> None:
    mail_from = _transaction(session)
    address = parse_rcpt(arg, smtputf8=mail_from.smtputf8)
    if asks.LISTENER_DOMAIN in session.handled:
        session.wait_for(asks.rcpt_asked(session, mail_from, address))
        return
    if not session.relay:
        log.warning("relaying denied", peer=session.peer, recipient=address)
        raise CommandError("550 5.7.1 relaying denied")
    asks.check_recipient_limits(session)
    if asks.RCPT_TO in session.handled:
        session.wait_for(asks.rcpt_event(session, address, RELAY))
        return
    asks.take_recipient(session, address, RELAY)


def data(session: Session, arg: str) -> None:
    _transaction(session)
    if not session.rcpts:
        raise CommandError("503 5.5.1 Error: need RCPT command")
    if arg:
        raise CommandError("501 5.5.4 Syntax: DATA")
    session.in_data, session.scanned, session.data_error = True, 0, None
    session.say("354 End data with <CR><LF>.<CR><LF>")


def rset(session: Session, arg: str) -> None:
    if arg:
        raise CommandError("501 5.5.4 Syntax: RSET")
    session.reset()
    session.say("250 2.0.0 OK")


def noop(session: Session, arg: str) -> None:
    session.say("250 2.0.0 OK")


def vrfy(session: Session, arg: str) -> None:
    if not arg:
        raise CommandError("501 5.5.4 Syntax: VRFY <address>")
    session.say("252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery")


def help_(session: Session, arg: str) -> None:
    session.say("250 2.0.0 Supported commands: " + " ".join(sorted(COMMANDS)))


def quit_(session: Session, arg: str) -> None:
    session.say("221 2.0.0 Bye")
    session.close()


def starttls(session: Session, arg: str) -> None:
    if session.secure:
        raise CommandError("503 5.5.1 Error: TLS already active")
    try:
        context = session.listener.tls_context(session.keys.config)
    except (OSError, ssl.SSLError) as exc:
        log.error("TLS certificate cannot be used", peer=session.peer, error=str(exc))
        context = None
    if context is None:
        raise CommandError("454 4.7.0 TLS not available")
    if arg:
        raise CommandError("501 5.5.4 Syntax: STARTTLS")
    session.say("220 2.0.0 Ready to start TLS")
    session.buffer.clear()  # RFC 3207: nothing sent before the handshake counts
    session.before_tls = True
    session.busy = True
    session.spawn(_start_tls(session, context))


async def _start_tls(session: Session, context: ssl.SSLContext) -> None:
    assert session.transport is not None
    if await asks.written(session):  # the 220 (rewritten, when the policy does)
        return
    loop = asyncio.get_running_loop()
    # start_tls hands the raw transport to its TLS protocol before its first await: from
    # here on, what reaches data_received came through TLS
    session.before_tls = False
    try:
        transport = await loop.start_tls(
            session.transport,
            session,
            context,
            server_side=True,
            ssl_handshake_timeout=session.keys.config.client_timeout,
        )
    except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
        log.info("STARTTLS handshake failed", peer=session.peer, error=str(exc))
        session.close()
        return
    if transport is None:
        session.close()
        return
    session.transport = transport
    session.secure, session.helo, session.extended = True, None, False
    asks.secured(session, transport)
    session.reset()
    session.resume()


COMMANDS: dict[str, Command] = {
    "HELO": helo,
    "EHLO": ehlo,
    "MAIL": mail,
    "RCPT": rcpt,
    "DATA": data,
    "RSET": rset,
    "NOOP": noop,
    "VRFY": vrfy,
    "HELP": help_,
    "QUIT": quit_,
    "STARTTLS": starttls,
    "AUTH": auth.auth,
}


def line_step(session: Session) -> bool:
    """Handle the next command line in the buffer; False while there is no whole one."""
    buffer = session.buffer
    end = buffer.find(b"\n")
    if end < 0:
        if len(buffer) > MAX_LINE:  # drop it as it comes; answer at its end
            session.skipping = True
            buffer.clear()
        return False
    session.command = None  # (until the line is known to be one)
    if session.skipping or end >= MAX_LINE:
        session.skipping = False
        del buffer[: end + 1]
        session.say("500 5.5.2 Command line too long")
        return True
    line = bytes(buffer[:end])
    del buffer[: end + 1]
    try:
        text = line.rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        session.say("500 5.5.2 Command is not valid UTF-8")
        return True
    if session.sasl is not None:  # a response in an AUTH exchange
        return auth.respond(session, text)
    verb, arg = split_command(text)
    session.command = text if verb != "AUTH" else auth.command_name(arg)
    command = COMMANDS.get(verb)
    if command is None:
        shown = "".join(c if c.isprintable() else "?" for c in verb[:32])
        session.say(f'500 5.5.1 Error: command "{shown}" not recognized')
        return True
    try:
        command(session, arg)
    except CommandError as error:
        replies.refuse(session, error)
    return True
