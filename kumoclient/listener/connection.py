"""What the listener shares with whoever answers for the policy: one connection as the SMTP
server events see it (its metadata, who it authenticated as, the listener domains it looked
up), the questions the listener asks (`ServerEvents`), and a whole transaction handed over
to be stored (`Transaction`, `Accept`).

The listener knows nothing of Lua: the engine answers `ServerEvents` with the policy (a
`kumo.reject` arrives here as CommandError carrying its reply and its disconnect mode).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kumoclient.configs import EsmtpListenerConfig, ListenerOverrides
from kumoclient.core.listener_domain import ListenerDomain, RelayDisposition
from kumoclient.core.smtp_auth import Authenticated, Credentials

DOMAINS_KEPT = 16  # listener domains remembered per connection (KumoMTA's bound)


@dataclass(eq=False, slots=True)
class Connection:
    """One SMTP connection: `local` is the listener's `ip:port`, `peer` the client's address
    and `peer_port` its port; `meta` is the connection metadata, `auth` its AuthInfo."""

    local: str
    peer: str
    peer_port: int
    hostname: str  # the listener's effective host name
    meta: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, Any] = field(default_factory=dict)
    helo: str | None = None  # the HELO/EHLO name given last
    extended: bool = False  # EHLO rather than HELO
    tls: tuple[str, str] | None = None  # (protocol version, cipher) once STARTTLS is done
    authenticated: Authenticated | None = None
    domains: dict[str, ListenerDomain | None] = field(default_factory=dict)
    policy_view: object = None  # what the engine made to show `meta` to the policy, once

    def remember(self, domain: str, found: ListenerDomain | None) -> None:
        """Keep a listener domain looked up (at most DOMAINS_KEPT, the oldest dropped)."""
        while len(self.domains) >= DOMAINS_KEPT:
            del self.domains[next(iter(self.domains))]
        self.domains[domain] = found


@dataclass(eq=False, slots=True)
class Transaction:
    """A message to store: the envelope, each recipient's relay disposition (from the
    listener domains), the content, the connection and the keys in force for it."""

    sender: str
    recipients: list[str]
    dispositions: list[RelayDisposition]
    content: bytes
    smtputf8: bool
    connection: Connection
    keys: EsmtpListenerConfig


# a transaction -> the 250 reply (CommandError / SubmissionRefused: the refusal)
Accept = Callable[[Transaction], Awaitable[str]]


class ServerEvents(Protocol):
    """The policy's answers at each step of a session; `handled()` names the events there is
    anything to ask about (the listener asks nothing otherwise). A refusal is CommandError."""

    def handled(self) -> frozenset[str]:
        """Every event the policy has a handler for now (a session takes this once, when it
        starts: the policy it began with answers all its questions)."""

    async def dynamic_parameters(self, conn: Connection) -> ListenerOverrides | None:
        """`smtp_server_get_dynamic_parameters`."""

    async def connection_accepted(self, conn: Connection) -> None:
        """`smtp_server_connection_accepted`."""

    async def ehlo(
        self, domain: str, conn: Connection, extensions: list[str] | None
    ) -> list[str] | None:
        """`smtp_server_ehlo` (HELO: `extensions` None)."""

    async def mail_from(self, sender: str, conn: Connection) -> None:
        """`smtp_server_mail_from`."""

    async def rcpt_to(self, recipient: str, conn: Connection) -> None:
        """`smtp_server_rcpt_to`."""

    async def listener_domain(self, domain: str, conn: Connection) -> ListenerDomain | None:
        """`get_listener_domain`."""

    async def auth_plain(self, credentials: Credentials, conn: Connection) -> Authenticated | None:
        """`smtp_server_auth_plain`: None when the credentials are refused."""

    async def rewrite_response(
        self, code: int, text: str, command: str | None, conn: Connection
    ) -> tuple[int, str]:
        """`smtp_server_rewrite_response`."""


class NoEvents:
    """A listener without a policy: nothing to ask."""

    def handled(self) -> frozenset[str]:
        return frozenset()

    async def dynamic_parameters(self, conn: Connection) -> ListenerOverrides | None:
        return None

    async def connection_accepted(self, conn: Connection) -> None:
        return None

    async def ehlo(
        self, domain: str, conn: Connection, extensions: list[str] | None
    ) -> list[str] | None:
        return None

    async def mail_from(self, sender: str, conn: Connection) -> None:
        return None

    async def rcpt_to(self, recipient: str, conn: Connection) -> None:
        return None

    async def listener_domain(self, domain: str, conn: Connection) -> ListenerDomain | None:
        return None

    async def auth_plain(self, credentials: Credentials, conn: Connection) -> Authenticated | None:
        return None

    async def rewrite_response(
        self, code: int, text: str, command: str | None, conn: Connection
    ) -> tuple[int, str]:
        return code, text
