"""The policy's answers to the SMTP listener (`listener.ServerEvents`), from the active
policy (a reload takes effect for the next question).

The one translation between the two: `kumo.reject` / `kumo.disconnect` become CommandError
with the handler's reply and disconnect mode; a failing handler (a Lua error, an answer of
the wrong kind) is logged and the command gets `451 4.3.0 Local policy error, try again
later` (AUTH: `454 4.7.0 Temporary authentication failure`), the session going on. The
connection metadata reaches the policy as one `conn_meta` object per connection.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from kumoclient import logs
from kumoclient.configs import ListenerOverrides
from kumoclient.core.listener_domain import ListenerDomain
from kumoclient.core.smtp_auth import Authenticated, Credentials
from kumoclient.errors import CommandError, PolicyError, PolicyReject
from kumoclient.listener import Connection
from kumoclient.policy import smtp_events
from kumoclient.policy.conn_meta import ConnectionMeta
from kumoclient.policy.runtime import PolicyHolder

log = logs.get_logger(__name__)

T = TypeVar("T")
POLICY_FAILED = "451 4.3.0 Local policy error, try again later"
AUTH_FAILED = "454 4.7.0 Temporary authentication failure"


def conn_meta(conn: Connection) -> ConnectionMeta:
    """The `conn_meta` object of a connection (made once, kept on it)."""
    view = conn.policy_view
    if not isinstance(view, ConnectionMeta):
        view = conn.policy_view = ConnectionMeta(conn.meta, conn.auth)
    return view


async def answered(event: str, work: Awaitable[T], failed: str = POLICY_FAILED) -> T:
    """`work`'s answer, or the CommandError the listener gives for its refusal or failure."""
    try:
        return await work
    except PolicyReject as reject:
        raise CommandError(f"{reject.code} {reject.text}", reject.disconnect) from reject
    except PolicyError as exc:
        log.error(
            "smtp server policy event failed",
            policy_event=event,
            error=str(exc),
            policy_location=exc.location,
        )
        raise CommandError(failed) from exc


class PolicyEvents:
    """`listener.ServerEvents` answered by the policy of `holder`."""

    def __init__(self, holder: PolicyHolder) -> None:
        self.holder = holder

    def handled(self) -> frozenset[str]:
        return self.holder.current.handled

    async def dynamic_parameters(self, conn: Connection) -> ListenerOverrides | None:
        runtime, meta = self.holder.current, conn_meta(conn)
        event = "smtp_server_get_dynamic_parameters"
        return await answered(event, smtp_events.dynamic_parameters(runtime, conn.local, meta))

    async def connection_accepted(self, conn: Connection) -> None:
        runtime = self.holder.current
        work = smtp_events.connection_accepted(runtime, conn_meta(conn))
        await answered("smtp_server_connection_accepted", work)

    async def ehlo(
        self, domain: str, conn: Connection, extensions: list[str] | None
    ) -> list[str] | None:
        work = smtp_events.ehlo(self.holder.current, domain, conn_meta(conn), extensions)
        return await answered("smtp_server_ehlo", work)

    async def mail_from(self, sender: str, conn: Connection) -> None:
        work = smtp_events.mail_from(self.holder.current, sender, conn_meta(conn))
        await answered("smtp_server_mail_from", work)

    async def rcpt_to(self, recipient: str, conn: Connection) -> None:
        work = smtp_events.rcpt_to(self.holder.current, recipient, conn_meta(conn))
        await answered("smtp_server_rcpt_to", work)

    async def listener_domain(self, domain: str, conn: Connection) -> ListenerDomain | None:
        runtime, meta = self.holder.current, conn_meta(conn)
        work = smtp_events.listener_domain(runtime, domain, conn.local, meta)
        return await answered("get_listener_domain", work)

    async def auth_plain(self, credentials: Credentials, conn: Connection) -> Authenticated | None:
        work = smtp_events.auth_plain(self.holder.current, credentials, conn_meta(conn))
        return await answered("smtp_server_auth_plain", work, AUTH_FAILED)

    async def rewrite_response(
        self, code: int, text: str, command: str | None, conn: Connection
    ) -> tuple[int, str]:
        runtime = self.holder.current
        return await smtp_events.rewrite_response(runtime, code, text, command, conn_meta(conn))
