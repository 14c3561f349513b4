"""The HTTP listener (`kumo.start_http_listener`): inject API, metrics, liveness, admin routes.

An adapter: it serves HTTP and checks who may call (server.py), validates and builds inject
requests (inject_request.py, inject_message.py, inject.py) and serves the admin API
(admin.py); the work itself is done by what the daemon passes in (`Handlers`, and objects the
engine and its reception satisfy structurally: `inject.Receiver`, `admin.QueueAdmin`). It
imports nothing of the engine or the policy.
"""

from __future__ import annotations

from kumoclient.http.server import (
    REALM,
    Client,
    Handlers,
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
    "HttpServer",
    "JsonHandler",
    "Route",
    "RouteHandler",
    "json_route",
]
