"""The SMTP commands of a session: each checks its place in the dialogue and its argument,
then answers (a CommandError carries a refusal's reply); the decisions on addresses and
parameters are core/smtp_server.py's."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from kumoclient import logs
from kumoclient.core.smtp_server import MAX_LINE, MailFrom, parse_mail, parse_rcpt, split_command
from kumoclient.errors import CommandError

if TYPE_CHECKING:
    from kumoclient.listener.session import Session

log = logs.get_logger(__name__)

Command = Callable[["Session", str], None]


def _helo(session: Session, arg: str, *, extended: bool) -> None:
    verb = "EHLO" if extended else "HELO"
    if not arg:
        raise CommandError(f"501 5.5.4 Syntax: {verb} hostname")
    session.reset()
    session.helo, session.extended = arg, extended
    listener = session.listener
    if extended:
        session.out.append(listener.ehlo_reply if session.secure else listener.ehlo_reply_tls)
    else:
        session.out.append(f"250 {listener.hostname}")


def helo(session: Session, arg: str) -> None:
    _helo(session, arg, extended=False)


def ehlo(session: Session, arg: str) -> None:
    _helo(session, arg, extended=True)


def mail(session: Session, arg: str) -> None:
    if session.helo is None:
        raise CommandError("503 5.5.1 Error: send HELO first")
    if session.mail is not None:
        raise CommandError("503 5.5.1 Error: nested MAIL command")
    size_limit = session.listener.size_limit
    session.mail = parse_mail(arg, extended=session.extended, size_limit=size_limit)
    session.out.append("250 2.1.0 OK")


def _transaction(session: Session) -> MailFrom:
    """The open transaction's MAIL FROM (CommandError 503 when there is none)."""
    if session.helo is None:
        raise CommandError("503 5.5.1 Error: send HELO first")
    if session.mail is None:
        raise CommandError("503 5.5.1 Error: need MAIL command")
    return session.mail


def rcpt(session: Session, arg: str) -> None:
    mail_from = _transaction(session)
    if not session.relay:
        log.warning("relaying denied", peer=session.peer, recipient=arg)
        raise CommandError("550 5.7.1 relaying denied")
    address = parse_rcpt(arg, smtputf8=mail_from.smtputf8)
    if len(session.rcpts) >= session.listener.config.max_recipients_per_message:
        raise CommandError("452 4.5.3 Too many recipients")
    session.rcpts.append(address)
    session.out.append("250 2.1.5 OK")


def data(session: Session, arg: str) -> None:
    _transaction(session)
    if not session.rcpts:
        raise CommandError("503 5.5.1 Error: need RCPT command")
    if arg:
        raise CommandError("501 5.5.4 Syntax: DATA")
    session.in_data, session.scanned, session.data_error = True, 0, None
    session.out.append("354 End data with <CR><LF>.<CR><LF>")


def rset(session: Session, arg: str) -> None:
    if arg:
        raise CommandError("501 5.5.4 Syntax: RSET")
    session.reset()
    session.out.append("250 2.0.0 OK")


def noop(session: Session, arg: str) -> None:
    session.out.append("250 2.0.0 OK")


def vrfy(session: Session, arg: str) -> None:
    if not arg:
        raise CommandError("501 5.5.4 Syntax: VRFY <address>")
    session.out.append("252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery")


def help_(session: Session, arg: str) -> None:
    session.out.append("250 2.0.0 Supported commands: " + " ".join(sorted(COMMANDS)))


def quit_(session: Session, arg: str) -> None:
    session.out.append("221 2.0.0 Bye")
    session.close()


def starttls(session: Session, arg: str) -> None:
    context = session.listener.tls
    if context is None:
        raise CommandError("454 4.7.0 TLS not available")
    if session.secure:
        raise CommandError("503 5.5.1 Error: TLS already active")
    if arg:
        raise CommandError("501 5.5.4 Syntax: STARTTLS")
    session.out.append("220 2.0.0 Ready to start TLS")
    session.flush()
    session.buffer.clear()  # RFC 3207: nothing sent before the handshake counts
    session.before_tls = True
    session.busy = True
    session.spawn(_start_tls(session, context))


async def _start_tls(session: Session, context: ssl.SSLContext) -> None:
    assert session.transport is not None
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
            ssl_handshake_timeout=session.listener.config.client_timeout,
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
    if session.skipping or end >= MAX_LINE:
        session.skipping = False
        del buffer[: end + 1]
        session.out.append("500 5.5.2 Command line too long")
        return True
    line = bytes(buffer[:end])
    del buffer[: end + 1]
    try:
        text = line.rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError:
        session.out.append("500 5.5.2 Command is not valid UTF-8")
        return True
    verb, arg = split_command(text)
    command = COMMANDS.get(verb)
    if command is None:
        shown = "".join(c if c.isprintable() else "?" for c in verb[:32])
        session.out.append(f'500 5.5.1 Error: command "{shown}" not recognized')
        return True
    try:
        command(session, arg)
    except CommandError as error:
        session.out.append(error.reply)
    return True
