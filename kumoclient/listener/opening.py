"""The start of a session: the connection's metadata and keys (`peer`, `via`, `meta`, and
`smtp_server_get_dynamic_parameters`), and the events before the greeting."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from kumoclient.configs import ListenerOverrides
from kumoclient.core.listen import show_address
from kumoclient.core.listener_params import apply, base_overlay
from kumoclient.errors import CommandError
from kumoclient.listener.shared import Keys

if TYPE_CHECKING:
    from kumoclient.listener.session import Session

DYNAMIC = "smtp_server_get_dynamic_parameters"
ACCEPTED = "smtp_server_connection_accepted"


def connection_meta(session: Session, transport: asyncio.BaseTransport) -> None:
    """The connection's metadata, and its keys when `peer`, `via` or `meta` apply."""
    local, peer = transport.get_extra_info("sockname"), transport.get_extra_info("peername")
    conn = session.conn
    conn.local = show_address(local) if local else ""
    conn.peer_port = peer[1] if isinstance(peer, tuple) else 0
    conn.meta = {
        "reception_protocol": "ESMTP",
        "received_via": conn.local,
        "received_from": show_address(peer) if peer else session.peer,
        "hostname": session.keys.hostname,
    }
    conn.auth = {"peer_address": session.peer, "identities": [], "groups": []}
    if not session.listener.plain:
        set_keys(session, base_overlay(session.listener.config))


def set_keys(session: Session, overlay: ListenerOverrides) -> None:
    """Apply `overlay` to the session's keys (a `peer`/`via` block, a dynamic answer)."""
    listener, conn = session.listener, session.conn
    local = conn.local.rpartition(":")[0].strip("[]")
    config = apply(session.keys.config, overlay, local=local, peer=session.peer, meta=conn.meta)
    session.keys = Keys(config, listener.default_hostname)
    conn.hostname = session.keys.hostname
    session.relay = listener.may_relay(session.peer, session.keys)


async def open_events(session: Session) -> None:
    """The events before the greeting; a refusal is the last reply (KumoMTA's rule)."""
    events = session.listener.events
    try:
        if DYNAMIC in session.handled:
            overlay = await events.dynamic_parameters(session.conn)
            if overlay is not None:
                set_keys(session, overlay)
        if ACCEPTED in session.handled:
            await events.connection_accepted(session.conn)
    except CommandError as error:
        session.say(error.reply)
        session.close()
        return
    session.say(session.keys.greeting)
