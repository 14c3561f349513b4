"""The SMTP submission listener: ESMTP in, whole transactions handed to an `accept` callback.

Rules (SPEC 3, 8; the decisions are in core/smtp_server.py, core/listener_domain.py and
core/smtp_auth.py):
- RCPT from a client outside `relay_hosts` → `550 5.7.1 relaying denied` (never an open relay),
  unless the listener domains (`get_listener_domain`) let it relay or take reports;
- addresses that are not mailboxes (core/address.py: CR, LF, NUL, spaces, no domain ...) →
  `553 5.1.7` (MAIL) / `553 5.1.3` (RCPT);
- more than `max_recipients_per_message` → `452 4.5.3`;
- content over `max_message_size` → `552 5.3.4`; a line over 1,000 octets → `500 5.5.2`;
- NUL bytes in the content → `554 5.6.0`; a bare LF → `554 5.6.11` (SMTP smuggling defence);
- non-ASCII header bytes without SMTPUTF8, or invalid UTF-8 headers with it → `554 5.6.7`;
- `250` only when `accept` returns (the messages are durable); `accept` raises
  SubmissionRefused for any other answer (`452 4.3.1` spool trouble), CommandError for the
  policy's refusal;
- the SMTP server events (asks.py, auth.py, replies.py) are asked through `ServerEvents`
  (connection.py) only when the policy has a handler: each such command is answered once it
  has run, pipelined commands waiting in order;
- past `max_connections` (or the descriptors the process can spare), or
  `max_connections_per_client` from one address → `421 4.7.0` and the connection is closed;
- nothing received for `client_timeout`, or a session older than `max_session_duration` →
  `421 4.4.2`;
- DATA held in memory by all sessions is kept near `max_data_in_memory` (reading pauses).
Nothing is stored unless the whole transaction is accepted.

Modules: `server` (the accept loop, lifecycle), `limits` (connections, descriptors, the memory
budget), `shared` (what one listener's sessions share, the keys of a connection),
`connection` (what the policy sees of a connection, the questions asked of it), `session`
(one connection: its transport events, command loop, replies and time limits), `commands`
(the SMTP verbs), `asks` (the steps the policy has a say in), `auth` (SMTP AUTH), `replies`
(replies through `smtp_server_rewrite_response`), `data` (the data section).
aiosmtpd, which this listener ran on before, spent 0.8 ms of CPU per session on this machine,
more than the spool and the policy together (docs/performance.md); this costs about a tenth.
"""

from kumoclient.listener.connection import (
    Accept,
    Connection,
    NoEvents,
    ServerEvents,
    Transaction,
)
from kumoclient.listener.server import SmtpServer, bind_listener, finish_in_flight, start_listener

__all__ = [
    "Accept",
    "Connection",
    "NoEvents",
    "ServerEvents",
    "SmtpServer",
    "Transaction",
    "bind_listener",
    "finish_in_flight",
    "start_listener",
]
