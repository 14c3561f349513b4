"""Outbound SMTP over aiosmtplib: one session per connection, every server answer and every
failure a value (Reply, Exchange, ConnectFailure).

A `Session` is opened to one `Target` (an address and port of one MX host): TCP connect, the
220 greeting, EHLO (HELO when EHLO is refused as unknown), STARTTLS per `enable_tls`
(`opening`). Any failure there raises ConnectFailure (the engine then tries the next host;
these never reach the rewrite hook). Then `Session.send` runs one message's transaction
(`transaction`) and returns an `Exchange`: accepted, rejected, out_of_turn, transport or
smtputf8 (see `values.Exchange`). Replies are read by a protocol that keeps every reply in
order for PIPELINING and sets apart the replies that answer no command (`protocol`).

This package is the only code that touches aiosmtplib: `protocol` extends its protocol and
client, `channel` is the one module that catches its errors (into ConnectFailure while
opening, an internal TransportError after); nothing of aiosmtplib leaves the package.
"""

from kumoclient.smtp.session import Session
from kumoclient.smtp.values import Exchange, Target, Transcript, TransportFailure, needs_smtputf8

__all__ = ["Exchange", "Session", "Target", "Transcript", "TransportFailure", "needs_smtputf8"]
