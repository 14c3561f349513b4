"""Queue names `campaign:tenant@domain!routing_domain`, formatted and parsed as KumoMTA does.

Format: (campaign, tenant) -> `c:t@d`; campaign only -> `c:@d`; tenant only -> `t@d`;
neither -> `d`; `!rd` is appended only when a routing domain is set.
Parse: split on the first `@`; the prefix splits on the first `:` into campaign and tenant
(tenant may be the empty string), a prefix without `:` is the tenant; the rest (or the whole
name when there is no `@`) splits on the first `!` into domain and routing domain. Ports
(`foo.com:2025`) survive because `:` is only looked for before the `@`.
So that a name parses back into the parts it was made of, a tenant or campaign holds no `@`
or `:`, and a routing domain no `@` (`check_part`).
The parts come from the message's meta, where they must be strings (or null: unset) when set
(`check_reserved`); meta `queue` names the queue verbatim.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kumoclient.errors import QueueNameError
from kumoclient.records import QueueName


def format_queue_name(name: QueueName) -> str:
    """`campaign:tenant@domain!routing_domain` with absent parts omitted."""
    if not name.domain:
        raise QueueNameError("a queue name needs a domain")
    if name.campaign is not None:
        prefix = f"{name.campaign}:{name.tenant or ''}@"
    elif name.tenant is not None:
        prefix = f"{name.tenant}@"
    else:
        prefix = ""
    suffix = f"!{name.routing_domain}" if name.routing_domain else ""
    return f"{prefix}{name.domain}{suffix}"


def parse_queue_name(text: str) -> QueueName:
    """The parts of a queue name; see the module rules."""
    campaign: str | None = None
    tenant: str | None = None
    prefix, at, rest = text.partition("@")
    if not at:
        rest = text
    else:
        head, colon, tail = prefix.partition(":")
        if colon:
            campaign, tenant = head, tail
        else:
            tenant = prefix
    domain, bang, routing = rest.partition("!")
    return QueueName(domain, tenant, campaign, routing if bang else None)


RESERVED = ("queue", "tenant", "campaign", "routing_domain")


def check_reserved(meta: Mapping[str, Any]) -> None:
    """QueueNameError unless each reserved meta key (`queue`, `tenant`, `campaign`,
    `routing_domain`) is absent, null or a string: they name the message's queue, and KumoMTA
    refuses to name one from another JSON value."""
    for key in RESERVED:
        value = meta.get(key)
        if value is not None and not isinstance(value, str):
            raise QueueNameError(
                f"meta {key!r} must be a string (it names the message's queue), "
                f"not {_json_kind(value)}"
            )


def queue_name_for(recipient: str, meta: Mapping[str, Any]) -> str:
    """A message's queue: meta `queue` verbatim, else formatted from meta and the domain;
    QueueNameError when a reserved key holds something other than a string (check_reserved)."""
    check_reserved(meta)
    queue = meta.get("queue")
    if queue:
        return str(queue)
    domain = recipient.rpartition("@")[2].lower()
    return format_queue_name(
        QueueName(domain, meta.get("tenant"), meta.get("campaign"), meta.get("routing_domain"))
    )


def _json_kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    return "an array" if isinstance(value, list) else "an object"


_SEPARATORS = {"tenant": "@:", "campaign": "@:", "routing_domain": "@"}


def check_part(part: str, value: str) -> str:
    """`value` when it can be the `part` (tenant, campaign, routing_domain) of a queue name
    that parses back into the same parts; QueueNameError naming the part otherwise."""
    name = part.replace("_", " ")
    if not value:
        raise QueueNameError(f"a {name} must not be empty")
    bad = sorted({char for char in value if char in _SEPARATORS[part]})
    if bad:
        shown = " or ".join(repr(char) for char in bad)
        raise QueueNameError(
            f"a {name} must not contain {shown} (they separate the parts of a queue name)"
        )
    return value
