"""The HTTP listener (`kumo.start_http_listener`): inject API, metrics, liveness, admin routes.

An adapter: it serves HTTP and checks who may call, and hands the work to callables that the
engine layer passes in (`Handlers`); it imports nothing of the engine or the policy.
"""

from __future__ import annotations

from kumoclient.http.server import (
    REALM,
    Client,
    Handlers,
    HttpError,
    HttpServer,
    JsonHandler,
    Route,
    RouteHandler,
    json_route,
)

__all__ = [
    "REALM",
    "Client",
    "Handlers",
    "HttpError",
    "HttpServer",
    "JsonHandler",
    "Route",
    "RouteHandler",
    "json_route",
]
