"""The queue administration API over HTTP (served by every HTTP listener, behind its access
check) and the client the `kumoclient admin` commands use to call it.

    POST   /api/admin/suspend/v1  {domain?, tenant?, campaign?, reason, duration?} -> suspension
    GET    /api/admin/suspend/v1                                       -> [suspension, ...]
    DELETE /api/admin/suspend/v1  {id} | {domain?, tenant?, campaign?} | {}  -> {resumed}
    POST   /api/admin/bounce/v1   {domain?, tenant?, campaign?, reason, everything?} -> {bounced}
    POST   /api/admin/retry/v1    {domain?, tenant?, campaign?}        -> {retried}
    GET    /api/admin/queues/v1                                        -> [queue state, ...]

A bounce with no domain, tenant or campaign bounces every message, so it needs
`"everything": true` (as `kcli bounce --everything`).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Mapping

from kumoclient.core.duration import parse_duration
from kumoclient.core.selector import Selector
from kumoclient.engine.engine import Engine
from kumoclient.errors import ConfigError, KumoClientError
from kumoclient.http import Client, HttpError, Route, json_route

SELECTOR_FIELDS = ("domain", "tenant", "campaign")


def _text(body: Mapping[str, object], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise HttpError(400, f"{name}: required")
        return None
    if not isinstance(value, str):
        raise HttpError(400, f"{name}: expected a string, got {type(value).__name__}")
    return value


def _selector(body: Mapping[str, object], allowed: tuple[str, ...]) -> Selector:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise HttpError(400, f"unknown field {unknown[0]!r} (known: {', '.join(allowed)})")
    return Selector(
        domain=_text(body, "domain"), tenant=_text(body, "tenant"), campaign=_text(body, "campaign")
    )


def _is_everything(selector: Selector) -> bool:
    return selector.domain is None and selector.tenant is None and selector.campaign is None


def admin_routes(engine: Engine) -> list[Route]:
    """The admin endpoints on `engine`."""

    async def suspend(body: Mapping[str, object], client: Client) -> object:
        selector = _selector(body, (*SELECTOR_FIELDS, "reason", "duration"))
        reason = _text(body, "reason", required=True)
        assert reason is not None
        duration = None
        if body.get("duration") is not None:
            try:
                duration = parse_duration(body["duration"], what="duration")
            except ConfigError as exc:
                raise HttpError(400, str(exc)) from exc  # it names the duration
        return engine.suspend(selector, reason, duration).as_dict()

    async def suspensions(body: Mapping[str, object], client: Client) -> object:
        return [info.as_dict() for info in engine.list_suspensions()]

    async def resume(body: Mapping[str, object], client: Client) -> object:
        suspension_id = _text(body, "id")
        if suspension_id is not None:
            return {"resumed": engine.resume(suspension_id=suspension_id)}
        selector = _selector(body, SELECTOR_FIELDS)
        return {"resumed": engine.resume(None if _is_everything(selector) else selector)}

    async def bounce(body: Mapping[str, object], client: Client) -> object:
        selector = _selector(body, (*SELECTOR_FIELDS, "reason", "everything"))
        reason = _text(body, "reason", required=True)
        assert reason is not None
        if _is_everything(selector) and body.get("everything") is not True:
            raise HttpError(
                400, "no domain, tenant or campaign: set everything=true to bounce every message"
            )
        return {"bounced": engine.bounce(selector, reason)}

    async def retry(body: Mapping[str, object], client: Client) -> object:
        return {"retried": engine.retry_now(_selector(body, SELECTOR_FIELDS))}

    async def queues(body: Mapping[str, object], client: Client) -> object:
        return [state.as_dict() for state in engine.queue_states()]

    return [
        json_route("POST", "/api/admin/suspend/v1", suspend),
        json_route("GET", "/api/admin/suspend/v1", suspensions),
        json_route("DELETE", "/api/admin/suspend/v1", resume),
        json_route("POST", "/api/admin/bounce/v1", bounce),
        json_route("POST", "/api/admin/retry/v1", retry),
        json_route("GET", "/api/admin/queues/v1", queues),
    ]


class AdminUnavailable(KumoClientError):
    """The daemon's HTTP listener could not be reached (exit 69)."""


class AdminRefused(KumoClientError):
    """The daemon answered with an error (exit 65 for 4xx, 69 otherwise)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the daemon refused: {status} {message}")
        self.status = status


def call(
    url: str,
    method: str,
    path: str,
    body: Mapping[str, object] | None = None,
    *,
    auth: tuple[str, str] | None = None,
    timeout: float = 30.0,
) -> object:
    """One admin API call; the decoded JSON answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = str(exc.reason)
        raise AdminRefused(exc.code, str(message)) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AdminUnavailable(f"cannot reach the daemon at {url}: {reason}") from exc
