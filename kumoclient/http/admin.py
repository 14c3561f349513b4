"""The queue administration API over HTTP, served by every HTTP listener behind its access check.

    POST   /api/admin/suspend/v1  {domain?, tenant?, campaign?, reason, duration?} -> suspension
    GET    /api/admin/suspend/v1                                       -> [suspension, ...]
    DELETE /api/admin/suspend/v1  {id} | {domain?, tenant?, campaign?} | {}  -> {resumed}
    POST   /api/admin/bounce/v1   {domain?, tenant?, campaign?, reason, everything?} -> {bounced}
    POST   /api/admin/retry/v1    {domain?, tenant?, campaign?}        -> {retried}
    GET    /api/admin/queues/v1                                        -> [queue state, ...]

A bounce with no domain, tenant or campaign bounces every message, so it needs
`"everything": true` (as `kcli bounce --everything`). The work is done by a QueueAdmin (the
engine); a bad request is HttpError 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from kumoclient.core.duration import parse_duration
from kumoclient.core.selector import Selector
from kumoclient.errors import ConfigError, HttpError
from kumoclient.http.server import Client, Route, json_route

SELECTOR_FIELDS = ("domain", "tenant", "campaign")
SUSPEND_PATH = "/api/admin/suspend/v1"
BOUNCE_PATH = "/api/admin/bounce/v1"
RETRY_PATH = "/api/admin/retry/v1"
QUEUES_PATH = "/api/admin/queues/v1"


class Reported(Protocol):
    """A suspension or a queue state, as the API reports it."""

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        ...


class QueueAdmin(Protocol):
    """The operations behind the routes (the engine's)."""

    def suspend(self, selector: Selector, reason: str, duration: float | None = None) -> Reported:
        """Hold the selected messages until resumed or `duration` seconds."""
        ...

    def resume(self, selector: Selector | None = None, *, suspension_id: str | None = None) -> int:
        """Lift suspensions (by id, by equal selector, or all); how many."""
        ...

    def list_suspensions(self) -> Sequence[Reported]:
        """The active suspensions."""
        ...

    def bounce(self, selector: Selector, reason: str) -> int:
        """AdminBounce the selected messages; how many."""
        ...

    def retry_now(self, selector: Selector) -> int:
        """Make the selected scheduled messages due now; how many."""
        ...

    def queue_states(self) -> Sequence[Reported]:
        """Per queue: where its messages wait."""
        ...


def _text(body: Mapping[str, object], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise HttpError(400, f"{name}: required")
        return None
    if not isinstance(value, str):
        raise HttpError(400, f"{name}: expected a string, got {type(value).__name__}")
    return value


def _reason(body: Mapping[str, object]) -> str:
    reason = _text(body, "reason", required=True)
    assert reason is not None  # required
    return reason


def _selector(body: Mapping[str, object], allowed: tuple[str, ...]) -> Selector:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise HttpError(400, f"unknown field {unknown[0]!r} (known: {', '.join(allowed)})")
    return Selector(
        domain=_text(body, "domain"), tenant=_text(body, "tenant"), campaign=_text(body, "campaign")
    )


def _duration(body: Mapping[str, object]) -> float | None:
    if body.get("duration") is None:
        return None
    try:
        return parse_duration(body["duration"], what="duration")
    except ConfigError as exc:
        raise HttpError(400, str(exc)) from exc  # it names the duration


def admin_routes(admin: QueueAdmin) -> list[Route]:
    """The admin endpoints on `admin`."""

    async def suspend(body: Mapping[str, object], client: Client) -> object:
        selector = _selector(body, (*SELECTOR_FIELDS, "reason", "duration"))
        return admin.suspend(selector, _reason(body), _duration(body)).as_dict()

    async def suspensions(body: Mapping[str, object], client: Client) -> object:
        return [info.as_dict() for info in admin.list_suspensions()]

    async def resume(body: Mapping[str, object], client: Client) -> object:
        suspension_id = _text(body, "id")
        if suspension_id is not None:
            return {"resumed": admin.resume(suspension_id=suspension_id)}
        selector = _selector(body, SELECTOR_FIELDS)
        return {"resumed": admin.resume(None if selector.everything else selector)}

    async def bounce(body: Mapping[str, object], client: Client) -> object:
        selector = _selector(body, (*SELECTOR_FIELDS, "reason", "everything"))
        reason = _reason(body)
        if selector.everything and body.get("everything") is not True:
            raise HttpError(
                400, "no domain, tenant or campaign: set everything=true to bounce every message"
            )
        return {"bounced": admin.bounce(selector, reason)}

    async def retry(body: Mapping[str, object], client: Client) -> object:
        return {"retried": admin.retry_now(_selector(body, SELECTOR_FIELDS))}

    async def queues(body: Mapping[str, object], client: Client) -> object:
        return [state.as_dict() for state in admin.queue_states()]

    return [
        json_route("POST", SUSPEND_PATH, suspend),
        json_route("GET", SUSPEND_PATH, suspensions),
        json_route("DELETE", SUSPEND_PATH, resume),
        json_route("POST", BOUNCE_PATH, bounce),
        json_route("POST", RETRY_PATH, retry),
        json_route("GET", QUEUES_PATH, queues),
    ]
