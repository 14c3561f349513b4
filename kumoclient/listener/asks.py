"""The steps of a session the policy has a say in (KumoMTA's order and rules):

- HELO/EHLO: `smtp_server_ehlo(domain, conn_meta, extensions)`; for EHLO a list it returns is
  what is advertised (what the listener does is unchanged); `ehlo_domain` is then set;
- MAIL: `smtp_server_mail_from(sender, conn_meta)`;
- RCPT: with a `get_listener_domain` handler, the listener domains of the sender's and the
  recipient's domains decide (core/listener_domain.py; each domain is asked once per
  connection, at most DOMAINS_KEPT kept), else `relay_hosts` alone (`550 5.7.1`); then the
  recipient limits (`452 4.5.3`; past `max_messages_per_connection` with no recipient yet,
  `421 4.5.3` and the end of the session); then `smtp_server_rcpt_to(recipient, conn_meta)`.
A refusal (`kumo.reject`) is the command's reply; the session goes on unless it is a 421 or
`kumo.disconnect` says otherwise (session.refuse).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from kumoclient import logs
from kumoclient.core.listener_domain import ListenerDomain, RelayDisposition, check_relaying
from kumoclient.core.smtp_server import MailFrom
from kumoclient.errors import CommandError
from kumoclient.listener import replies

if TYPE_CHECKING:
    from kumoclient.listener.session import Session

log = logs.get_logger(__name__)

EHLO = "smtp_server_ehlo"
MAIL_FROM = "smtp_server_mail_from"
RCPT_TO = "smtp_server_rcpt_to"
LISTENER_DOMAIN = "get_listener_domain"
AUTH = "smtp_server_auth_plain"

# the short names of certificate subject attributes (tls_peer_subject_name)
_SUBJECT = {
    "commonName": "CN",
    "countryName": "C",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "localityName": "L",
    "stateOrProvinceName": "ST",
}


def auth_offered(session: Session) -> bool:
    """AUTH is offered: under TLS (or where the listener allows it in clear), when the
    policy has a `smtp_server_auth_plain` handler to decide."""
    may = session.secure or session.keys.config.allow_smtp_auth_without_tls
    return may and AUTH in session.handled


def extensions(session: Session) -> list[str]:
    """What this session's EHLO advertises."""
    offer_tls = not session.secure and bool(session.keys.config.tls_certificate)
    return session.keys.ehlo_extensions(offer_tls=offer_tls, offer_auth=auth_offered(session))


def default_ehlo(session: Session) -> str:
    """This session's EHLO reply when the policy does not change it."""
    offer_tls = not session.secure and bool(session.keys.config.tls_certificate)
    return session.keys.default_ehlo(offer_tls=offer_tls, offer_auth=auth_offered(session))


def greeted(session: Session, name: str, extended: bool) -> None:
    """HELO/EHLO was answered: the name is the session's (`ehlo_domain`)."""
    session.helo, session.extended = name, extended
    session.conn.helo, session.conn.extended = name, extended
    session.conn.meta["ehlo_domain"] = name


async def helo_asked(session: Session, name: str, *, extended: bool) -> None:
    events = session.listener.events
    if extended:
        offered = extensions(session)
        replaced = await events.ehlo(name, session.conn, offered)
        reply = session.keys.ehlo_reply(offered if replaced is None else replaced)
    else:
        await events.ehlo(name, session.conn, None)
        reply = f"250 {session.keys.hostname}"
    greeted(session, name, extended)
    session.say(reply)


async def mail_asked(session: Session, mail_from: MailFrom) -> None:
    await session.listener.events.mail_from(mail_from.address, session.conn)
    session.mail = mail_from
    session.say("250 2.1.0 OK")


def check_recipient_limits(session: Session) -> None:
    """CommandError when the transaction or the connection has all the recipients it may."""
    config = session.keys.config
    if len(session.rcpts) >= config.max_recipients_per_message:
        raise CommandError("452 4.5.3 Too many recipients")
    if session.rcpt_count >= config.max_messages_per_connection:
        if not session.rcpts:
            raise CommandError(
                f"421 4.5.3 {session.keys.hostname} too many recipients on this connection"
            )
        raise CommandError("452 4.5.3 Too many recipients on this connection")


def take_recipient(session: Session, address: str, disposition: RelayDisposition) -> None:
    session.rcpts.append(address)
    session.dispositions.append(disposition)
    session.rcpt_count += 1
    session.say("250 2.1.5 OK")


async def rcpt_event(session: Session, address: str, disposition: RelayDisposition) -> None:
    await session.listener.events.rcpt_to(address, session.conn)
    take_recipient(session, address, disposition)


async def rcpt_asked(session: Session, mail_from: MailFrom, address: str) -> None:
    """RCPT with the listener domains deciding who may relay."""
    disposition = check_relaying(
        session.peer,
        session.relay,
        await listener_domain(session, mail_from.address),
        await listener_domain(session, address),
    )
    if not disposition.takes_recipient:
        log.warning("relaying denied", peer=session.peer, recipient=address)
        raise CommandError("550 5.7.1 relaying denied")
    check_recipient_limits(session)
    if RCPT_TO in session.handled:
        await session.listener.events.rcpt_to(address, session.conn)
    take_recipient(session, address, disposition)


async def listener_domain(session: Session, address: str) -> ListenerDomain | None:
    """The listener domain of `address`'s domain (None for the null sender)."""
    if not address:
        return None
    domain = address.rpartition("@")[2]
    conn = session.conn
    if domain in conn.domains:
        return conn.domains[domain]
    found = await session.listener.events.listener_domain(domain, conn)
    conn.remember(domain, found)
    return found


async def written(session: Session) -> bool:
    """Write the replies gathered (through the rewrite handler, when there is one); True when
    the session has ended (a reply was made a 421)."""
    if not replies.rewriting(session):
        session.flush()
        return False
    if await replies.write(session):
        session.close()
        return True
    return False


def secured(session: Session, transport: asyncio.BaseTransport) -> None:
    """STARTTLS is done: the TLS version, cipher and client certificate in the metadata (the
    listener domains are asked afresh)."""
    conn = session.conn
    conn.domains.clear()
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is not None:
        cipher = ssl_object.cipher()
        conn.tls = (str(ssl_object.version()), str(cipher[0]) if cipher else "")
        conn.meta["tls_protocol_version"], conn.meta["tls_cipher"] = conn.tls
    subject = _subject(transport.get_extra_info("peercert"))
    if subject:
        conn.meta["tls_peer_subject_name"] = subject


def _subject(certificate: Any) -> list[str]:
    if not isinstance(certificate, dict):
        return []
    return [
        f"{_SUBJECT.get(name, name)}={value}"
        for rdn in certificate.get("subject", ())
        for name, value in rdn
    ]
