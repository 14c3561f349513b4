"""`kumoclient admin ACTION`: one call to a running daemon's admin API, the answer printed.

The call goes to the admin API (http/admin.py) over the daemon's HTTP listener; its answer is
printed as JSON.

Rules: `suspend` and `bounce` need `--reason`; `--user` and `--password` go together; the URL
must be an http(s) URL with a host (admin_client.check_url). Each is UsageError (exit 64).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, TextIO

from kumoclient.commands.admin_client import call, check_url
from kumoclient.errors import UsageError

EX_OK = 0
DEFAULT_URL = "http://127.0.0.1:8000"

Action = Literal["suspend", "resume", "suspensions", "bounce", "retry", "queues"]
ACTIONS: dict[str, tuple[str, str]] = {
    "suspend": ("POST", "/api/admin/suspend/v1"),
    "resume": ("DELETE", "/api/admin/suspend/v1"),
    "suspensions": ("GET", "/api/admin/suspend/v1"),
    "bounce": ("POST", "/api/admin/bounce/v1"),
    "retry": ("POST", "/api/admin/retry/v1"),
    "queues": ("GET", "/api/admin/queues/v1"),
}


@dataclass(frozen=True, slots=True)
class AdminOptions:
    """`admin ACTION [--domain D] [--tenant T] [--campaign C] [--reason R] [--duration D]
    [--id ID] [--everything] [--url URL] [--user U --password P]`."""

    action: Action
    domain: str | None = None
    tenant: str | None = None
    campaign: str | None = None
    reason: str | None = None
    duration: str | None = None  # suspend: lift by itself after this long
    id: str | None = None  # resume: the suspension
    everything: bool = False  # bounce: no selector means every message
    url: str = DEFAULT_URL
    user: str | None = None
    password: str | None = None


def admin(options: AdminOptions, out: TextIO) -> int:
    """Call the daemon; print its answer."""
    check_url(options.url)
    if options.action in ("suspend", "bounce") and not options.reason:
        raise UsageError(f"admin {options.action}: --reason is required")
    if (options.user is None) != (options.password is None):
        raise UsageError("admin: --user and --password go together")
    method, path = ACTIONS[options.action]
    auth = None
    if options.user is not None and options.password is not None:
        auth = (options.user, options.password)
    answer = call(options.url, method, path, None if method == "GET" else _body(options), auth=auth)
    out.write(json.dumps(answer, indent=2, sort_keys=True) + "\n")
    return EX_OK


def _body(options: AdminOptions) -> dict[str, object]:
    """The request's JSON object."""
    if options.action == "resume" and options.id:
        return {"id": options.id}
    body: dict[str, object] = {
        part: value
        for part, value in (
            ("domain", options.domain),
            ("tenant", options.tenant),
            ("campaign", options.campaign),
        )
        if value is not None
    }
    if options.action in ("suspend", "bounce"):
        body["reason"] = options.reason
    if options.action == "suspend" and options.duration:
        body["duration"] = options.duration
    if options.action == "bounce" and options.everything:
        body["everything"] = True
    return body
