"""The Lua events kumoclient knows, declared once: name, arguments, handlers, result kind."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Handlers(enum.Enum):
    """How many handlers an event may have and how they are called."""

    SINGLE = "single"  # a second kumo.on is an error
    MULTI = "multi"  # called in order (until one returns non-nil, for events with results)


class Result(enum.Enum):
    """What an event's handler returns and how it is converted."""

    NOTHING = "nothing"
    QUEUE_CONFIG = "queue_config"  # kumo.make_queue_config{} or nil
    EGRESS_PATH = "egress_path"  # kumo.make_egress_path{} or nil
    STATUS_CODE = "status_code"  # an integer or numeric string, or nil (SPEC 2.3)
    BOOLEAN = "boolean"


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event of SPEC 4.2."""

    name: str
    args: tuple[str, ...]
    handlers: Handlers
    result: Result


EVENTS: dict[str, EventSpec] = {
    spec.name: spec
    for spec in (
        EventSpec("init", (), Handlers.MULTI, Result.NOTHING),
        EventSpec(
            "get_queue_config",
            ("domain", "tenant", "campaign", "routing_domain"),
            Handlers.MULTI,
            Result.QUEUE_CONFIG,
        ),
        EventSpec(
            "get_egress_path_config",
            ("routing_domain", "egress_source", "site_name"),
            Handlers.SINGLE,
            Result.EGRESS_PATH,
        ),
        EventSpec(
            "smtp_client_rewrite_delivery_status",
            ("response", "domain", "tenant", "campaign", "routing_domain"),
            Handlers.SINGLE,
            Result.STATUS_CODE,
        ),
        EventSpec("smtp_server_message_received", ("msg",), Handlers.MULTI, Result.NOTHING),
        EventSpec("http_message_generated", ("msg",), Handlers.MULTI, Result.NOTHING),
        EventSpec(
            "http_server_validate_auth_basic",
            ("user", "password"),
            Handlers.SINGLE,
            Result.BOOLEAN,
        ),
    )
}
