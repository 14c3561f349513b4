"""The HTTP listener on aiohttp: routes, who may call them, request body limit, JSON errors.

Routes:
- `GET /api/check-liveness/v1`: 200 while the process serves and takes mail, 503 with the
  reason while it takes none (`Handlers.unavailable`: the spool's disk too full); open to
  every client;
- `POST /api/inject/v1`: the body (JSON, at most `request_body_limit` bytes) goes to
  `Handlers.inject`, whose mapping is returned as JSON;
- `GET /metrics`: `Handlers.metrics()` (404 when there is none);
- every `Handlers.routes` entry (admin endpoints).

Access (SPEC 3): a client whose address is in `trusted_hosts` (default loopback) is admitted;
any other must send HTTP Basic credentials that `Handlers.validate_auth` accepts (the daemon
runs the policy's `http_server_validate_auth_basic`). Missing or refused credentials → 401 with
`WWW-Authenticate: Basic realm="kumoclient"`; a failing check → 500. Credentials sent by a
trusted client are checked too, as KumoMTA does (refused ones → 401). Every error answer is JSON
`{"error": "<what is wrong>"}`.

Who the client is, as KumoMTA's AuthInfo (`Client.auth`, handed to `http_message_generated`):
its IP address; the group `kumomta:http-listener-trusted-ip` when it is trusted; the identity
`(user, 'HttpBasicAuth')` when its credentials were accepted with `true`, or the identities and
groups of the AuthInfo the check returned instead.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from kumoclient import logs
from kumoclient.configs import HttpListenerConfig
from kumoclient.core.listen import split_listen as listen_address
from kumoclient.core.networks import Network, address_in
from kumoclient.errors import ConfigError, HttpError
from kumoclient.http.tls import server_context
from kumoclient.records import AuthInfo

log = logs.get_logger(__name__)

REALM = "kumoclient"
CHALLENGE: dict[str, str] = {"WWW-Authenticate": f'Basic realm="{REALM}"'}
LIVENESS_PATH = "/api/check-liveness/v1"
INJECT_PATH = "/api/inject/v1"
METRICS_PATH = "/metrics"
TRUSTED_GROUP = "kumomta:http-listener-trusted-ip"  # KumoMTA's group for trusted_hosts


@dataclass(frozen=True, slots=True)
class Client:
    """Who is calling: the peer address, the Basic-auth user whose credentials were accepted
    (None when it sent none), and its AuthInfo (see the module's text)."""

    address: str
    user: str | None = None
    auth: AuthInfo = field(default_factory=AuthInfo)


RouteHandler = Callable[[web.Request, Client], Awaitable[web.StreamResponse]]
"""An endpoint: the request and the admitted client in, the response out. It may raise
HttpError for a JSON error answer."""


@dataclass(frozen=True, slots=True)
class Route:
    """An extra endpoint (the admin API): `method` ('GET', 'POST', ...), aiohttp path
    pattern (`/api/admin/bounce/v1`, `/api/admin/queue/{name}`), handler. A `public` route
    skips the access check; the default is the same check as the inject API."""

    method: str
    path: str
    handler: RouteHandler
    public: bool = False


Inject = Callable[[object, Client], Awaitable[Mapping[str, object]]]
Metrics = Callable[[], tuple[bytes, str]]
Verdict = bool | AuthInfo  # an AuthInfo admits the client with its identities and groups
ValidateAuth = Callable[[str, str], Verdict | Awaitable[Verdict]]


async def _answer(result: Verdict | Awaitable[Verdict]) -> Verdict:
    if isinstance(result, bool | AuthInfo):
        return result
    return await result


@dataclass(frozen=True, slots=True)
class Handlers:
    """What the engine layer gives the listener.

    - `inject(body, client)`: the parsed JSON body of `POST /api/inject/v1` (any JSON value);
      returns the response object, or raises HttpError (4xx for bad input, 5xx otherwise);
    - `metrics()`: `(body, content_type)` for `GET /metrics`; None → 404;
    - `validate_auth(user, password)`: true or an AuthInfo (or an awaitable of one) admits a
      client that sent credentials; None → credentials are always refused; an exception →
      500;
    - `routes`: extra endpoints, checked like the inject API unless `public`;
    - `unavailable()`: why no mail is taken now (liveness answers 503), or None.
    """

    inject: Inject | None = None
    metrics: Metrics | None = None
    validate_auth: ValidateAuth | None = None
    routes: Sequence[Route] = field(default_factory=tuple)
    unavailable: Callable[[], str | None] | None = None


def _networks(hosts: Sequence[str]) -> list[Network]:
    networks = []
    for host in hosts:
        try:
            networks.append(ipaddress.ip_network(host, strict=False))
        except ValueError as exc:
            raise ConfigError(
                f"start_http_listener: trusted_hosts: {host!r} is not an IP address or CIDR range",
                key="trusted_hosts",
                value=host,
            ) from exc
    return networks


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port); ConfigError when it is neither."""
    try:
        return listen_address(listen)
    except ConfigError as exc:
        raise ConfigError(f"http listener address {exc}", key="listen", value=listen) from exc


def _basic_credentials(header: str) -> tuple[str, str]:
    """(user, password) of an `Authorization: Basic ...` header (RFC 7617, UTF-8)."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        raise HttpError(401, f"unsupported authorization scheme {scheme!r}: use Basic", CHALLENGE)
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise HttpError(
            401, "malformed Authorization header: the credentials are not base64 UTF-8", CHALLENGE
        ) from exc
    user, colon, password = decoded.partition(":")
    if not colon:
        raise HttpError(
            401, "malformed Authorization header: expected base64 of 'user:password'", CHALLENGE
        )
    return user, password


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The JSON error answer `{"error": message}`."""
    return web.json_response({"error": message}, status=status, headers=headers)


JsonHandler = Callable[[Mapping[str, object], Client], Awaitable[object]]
"""A JSON endpoint: the request's JSON object (the query parameters for a GET) and the
client in, anything orjson can encode out. It may raise HttpError."""


def json_route(method: str, path: str, handler: JsonHandler) -> Route:
    """A Route whose request and answer are JSON objects, so callers need no aiohttp."""

    async def handle(request: web.Request, client: Client) -> web.StreamResponse:
        body: object = dict(request.query)
        if request.body_exists:
            try:
                body = orjson.loads(await request.read())
            except orjson.JSONDecodeError as exc:
                raise HttpError(400, f"the request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise HttpError(400, "the request body must be a JSON object")
        result = await handler(body, client)
        return web.Response(body=orjson.dumps(result), content_type="application/json")

    return Route(method, path, handle)


class HttpServer:
    """One HTTP listener; `start()` binds (OSError when it cannot), `stop()` closes it after
    the requests in flight, at most `shutdown_timeout` seconds."""

    def __init__(
        self,
        config: HttpListenerConfig,
        handlers: Handlers,
        *,
        shutdown_timeout: float = 10.0,
    ) -> None:
        self.config = config
        self.handlers = handlers
        self.shutdown_timeout = shutdown_timeout
        self._host, self._port = split_listen(config.listen)
        self._trusted = _networks(config.trusted_hosts)
        self._ssl = server_context(config)
        self._runner: web.AppRunner | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.request_body_limit, middlewares=[self._json_errors]
        )
        app.router.add_get(LIVENESS_PATH, self._liveness)
        app.router.add_post(INJECT_PATH, self._guarded(self._inject))
        app.router.add_get(METRICS_PATH, self._guarded(self._metrics))
        for route in self.handlers.routes:
            handler = self._open(route.handler) if route.public else self._guarded(route.handler)
            app.router.add_route(route.method, route.path, handler)
        return app

    async def start(self) -> None:
        """Bind and serve; raises OSError (address in use, permission) with nothing left open."""
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=self.shutdown_timeout)
        await runner.setup()
        site = web.TCPSite(
            runner,
            self._host,
            self._port,
            ssl_context=self._ssl,
        )
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info(
            "http listener started",
            listen=self.config.listen,
            bound=[f"{host}:{port}" for host, port in self.addresses],
            trusted_hosts=list(self.config.trusted_hosts),
            tls=self._ssl is not None,
        )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) pairs actually bound (port 0 in the config picks a free one)."""
        if self._runner is None:
            return []
        return [(str(a[0]), int(a[1])) for a in self._runner.addresses]

    async def stop(self) -> None:
        """Stop listening; let requests in flight finish within `shutdown_timeout`."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            log.info("http listener stopped", listen=self.config.listen)

    # --- access ----------------------------------------------------------------------------

    def is_trusted(self, address: str) -> bool:
        """True when `address` is in `trusted_hosts` (IPv4-mapped IPv6 counts as IPv4)."""
        return address_in(address, self._trusted)

    async def _admit(self, request: web.Request) -> Client:
        peer = request.remote or ""
        trusted = self.is_trusted(peer)
        groups = (TRUSTED_GROUP,) if trusted else ()
        header = request.headers.get(hdrs.AUTHORIZATION)
        if not header:
            if trusted:
                return Client(peer, auth=AuthInfo(peer, (), groups))
            raise HttpError(
                401,
                "authentication required: this client is not in trusted_hosts; "
                "send HTTP Basic credentials",
                CHALLENGE,
            )
        user, password = _basic_credentials(header)
        verdict = await self._check(peer, user, password)
        if verdict is False:
            log.warning("http authentication refused", peer=peer, user=user)
            raise HttpError(401, "invalid credentials", CHALLENGE)
        if verdict is True:
            return Client(peer, user, AuthInfo(peer, ((user, "HttpBasicAuth"),), groups))
        identities, more = verdict.identities, verdict.groups
        return Client(peer, user, AuthInfo(peer, identities, groups + more))

    async def _check(self, peer: str, user: str, password: str) -> Verdict:
        validate = self.handlers.validate_auth
        try:
            return validate is not None and await _answer(validate(user, password))
        except Exception as exc:  # whatever the check raised, the client gets a clear 500
            log.error("http authentication check failed", peer=peer, user=user, error=str(exc))
            raise HttpError(
                500, f"authentication check failed (http_server_validate_auth_basic): {exc}"
            ) from exc

    def _guarded(self, handler: RouteHandler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            return await handler(request, await self._admit(request))

        return guarded

    @staticmethod
    def _open(handler: RouteHandler) -> Handler:
        async def public(request: web.Request) -> web.StreamResponse:
            return await handler(request, Client(request.remote or ""))

        return public

    # --- errors ----------------------------------------------------------------------------

    @web.middleware
    async def _json_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except HttpError as exc:
            response = error_response(exc.status, exc.message, exc.headers)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            message = exc.reason
            if exc.status == 413:
                message = self._too_large()
            headers = {k: v for k, v in exc.headers.items() if k != hdrs.CONTENT_TYPE}
            response = error_response(exc.status, message, headers)
        except Exception as exc:  # a bug must still answer in JSON, and be logged
            log.exception("http request failed", method=request.method, path=request.path)
            response = error_response(500, f"internal error: {type(exc).__name__}: {exc}")
        if response.status == 413:
            response.force_close()  # the rest of the body is not worth reading
        return response

    def _too_large(self) -> str:
        return (
            f"request body too large: the limit is {self.config.request_body_limit} bytes "
            "(request_body_limit)"
        )

    # --- endpoints -------------------------------------------------------------------------

    async def _liveness(self, request: web.Request) -> web.StreamResponse:
        unavailable = self.handlers.unavailable
        reason = unavailable() if unavailable is not None else None
        if reason is not None:
            return error_response(503, reason)
        return web.json_response({"status": "ok"})

    async def _inject(self, request: web.Request, client: Client) -> web.StreamResponse:
        inject = self.handlers.inject
        if inject is None:
            raise HttpError(404, "the inject API is not available on this listener")
        length = request.content_length
        if length is not None and length > self.config.request_body_limit:
            raise HttpError(413, self._too_large())
        body = await request.read()  # HTTPRequestEntityTooLarge past client_max_size
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HttpError(400, f"malformed JSON: {exc}") from exc
        result = await inject(data, client)
        return web.json_response(dict(result))

    async def _metrics(self, request: web.Request, client: Client) -> web.StreamResponse:
        metrics = self.handlers.metrics
        if metrics is None:
            raise HttpError(404, "metrics are not available")
        body, content_type = metrics()
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})
