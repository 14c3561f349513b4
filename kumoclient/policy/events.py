"""The Lua events, declared once: which take several handlers, and the ones kumoclient fires
(name, arguments, result kind, and the sample arguments `policy check` calls them with).

`kumo.on` accepts any name, as KumoMTA does: a policy may register events kumoclient does not
fire (yet), and custom events for `kumo.spawn_task`. An event of MULTI_HANDLER_EVENTS takes
several handlers, called in order until one returns a value; every other takes one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

# KumoMTA declares exactly these as taking several handlers (declare_event! ... Multiple)
MULTI_HANDLER_EVENTS = frozenset(
    {
        "pre_init",
        "validate_config",
        "get_queue_config",
        "throttle_insert_ready_queue",
        "requeue_message",
        "should_enqueue_log_record",
        "get_acl_definition",
    }
)


class Handlers(enum.Enum):
    """How many handlers an event may have and how they are called."""

    SINGLE = "single"  # a second kumo.on is an error
    MULTI = "multi"  # called in order until one returns a value (nothing passes on)


class Result(enum.Enum):
    """What an event's handler returns and how it is converted."""

    NOTHING = "nothing"
    QUEUE_CONFIG = "queue_config"  # kumo.make_queue_config{} or nil
    EGRESS_PATH = "egress_path"  # kumo.make_egress_path{} or nil
    STATUS_CODE = "status_code"  # an integer or numeric string, or nil (SPEC 2.3)
    BOOLEAN = "boolean"
    LISTENER_DOMAIN = "listener_domain"  # kumo.make_listener_domain{} or nil
    LISTENER_PARAMS = "listener_params"  # a table of listener keys or nil
    EXTENSIONS = "extensions"  # a list of EHLO extension strings or nil
    RESPONSE = "response"  # two values: a status code or nil, a text or nil
    AUTH = "auth"  # true, false or an AuthInfo table
    ANY = "any"  # not interpreted by kumoclient (yet)


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event kumoclient fires; `sample` are the arguments `policy check` calls a
    configuration event with (None: not called there)."""

    name: str
    args: tuple[str, ...]
    result: Result
    sample: tuple[Any, ...] | None = None

    @property
    def handlers(self) -> Handlers:
        """Single or several handlers."""
        return Handlers.MULTI if self.name in MULTI_HANDLER_EVENTS else Handlers.SINGLE


SAMPLE_DOMAIN = "example.com"
SAMPLE_RESPONSE = "451 4.7.1 sample response from policy check"

EVENTS: dict[str, EventSpec] = {
    spec.name: spec
    for spec in (
        EventSpec("pre_init", (), Result.NOTHING),
        EventSpec("init", (), Result.NOTHING),
        EventSpec("validate_config", (), Result.NOTHING),
        EventSpec(
            "get_queue_config",
            ("domain", "tenant", "campaign", "routing_domain"),
            Result.QUEUE_CONFIG,
            (SAMPLE_DOMAIN, None, None, None),
        ),
        EventSpec(
            "get_egress_path_config",
            ("routing_domain", "egress_source", "site_name"),
            Result.EGRESS_PATH,
            (SAMPLE_DOMAIN, "unspecified", f"mx.{SAMPLE_DOMAIN}"),
        ),
        EventSpec(
            "smtp_client_rewrite_delivery_status",
            ("response", "domain", "tenant", "campaign", "routing_domain"),
            Result.STATUS_CODE,
            (SAMPLE_RESPONSE, SAMPLE_DOMAIN, None, None, SAMPLE_DOMAIN),
        ),
        # the SMTP listener's events, in the order of a session (policy/smtp_events.py)
        EventSpec(
            "smtp_server_get_dynamic_parameters", ("listener", "conn_meta"), Result.LISTENER_PARAMS
        ),
        EventSpec("smtp_server_connection_accepted", ("conn_meta",), Result.NOTHING),
        EventSpec("smtp_server_ehlo", ("domain", "conn_meta", "extensions"), Result.EXTENSIONS),
        EventSpec(
            "smtp_server_auth_plain", ("authz", "authc", "password", "conn_meta"), Result.AUTH
        ),
        EventSpec("smtp_server_mail_from", ("sender", "conn_meta"), Result.NOTHING),
        EventSpec(
            "get_listener_domain", ("domain", "listener", "conn_meta"), Result.LISTENER_DOMAIN
        ),
        EventSpec("smtp_server_rcpt_to", ("recipient", "conn_meta"), Result.NOTHING),
        EventSpec("smtp_server_data", ("msg", "conn_meta"), Result.NOTHING),
        EventSpec("smtp_server_message_received", ("msg", "conn_meta"), Result.NOTHING),
        EventSpec(
            "smtp_server_rewrite_response",
            ("status", "response", "command", "conn_meta"),
            Result.RESPONSE,
        ),
        EventSpec("http_message_generated", ("msg", "auth_info"), Result.NOTHING),
        EventSpec("http_server_validate_auth_basic", ("user", "password"), Result.BOOLEAN),
        EventSpec("get_acl_definition", ("resource",), Result.ANY, ("http_listener/*/api/",)),
    )
}
