"""`kumo.http.build_client{...}` and its client and request objects, and `kumo.http.build_url`,
on aiohttp.

`client:get/post/put(URL)` make a Request; its builder methods return it (so calls chain);
`request:send()` waits for the answer and returns a Response (`http_response`). Clients with
the same `pool_idle_timeout` and `accept_invalid_certs` share one connection pool on each event
loop, closed when the loop ends (`loop_resources`); `client:close()` makes the client unusable.
A request can be sent once.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any, ClassVar

import aiohttp

from kumoclient.core.duration import parse_duration
from kumoclient.errors import ConfigError, PolicyIoError
from kumoclient.policy.api import LuaObject, kumo_function
from kumoclient.policy.modules import args, loop_resources
from kumoclient.policy.modules.http_response import MAX_BODY, Headers, Response

DEFAULT_TIMEOUT = 60.0
DEFAULT_POOL_IDLE_TIMEOUT = 90.0
_OPTIONS = {"user_agent", "connection_verbose", "pool_idle_timeout", "timeout"}
_OPTIONS |= {"accept_invalid_certs"}


def _session(idle: float, insecure: bool) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(keepalive_timeout=idle, ssl=not insecure)
    return aiohttp.ClientSession(connector=connector, auto_decompress=True)


async def _close(session: aiohttp.ClientSession) -> None:
    await session.close()


def _duration(what: str, value: Any) -> float:
    return parse_duration(value, what=what)


class Client(LuaObject):
    """What `kumo.http.build_client` returns."""

    lua_name = "HttpClient"
    lua_methods: ClassVar[frozenset[str]] = frozenset({"get", "post", "put", "close"})

    def __init__(self, options: dict[str, Any]) -> None:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ConfigError(f"kumo.http.build_client: unknown key {sorted(unknown)[0]!r}")
        agent = options.get("user_agent")
        self.user_agent = None if agent is None else args.text("build_client", agent)
        self.timeout = _duration("build_client: timeout", options.get("timeout", DEFAULT_TIMEOUT))
        idle = options.get("pool_idle_timeout", DEFAULT_POOL_IDLE_TIMEOUT)
        self.pool = (
            _duration("build_client: pool_idle_timeout", idle),
            options.get("accept_invalid_certs") is True,
        )
        self.closed = False

    def _request(self, method: str, url: Any) -> Request:
        if self.closed:
            raise ConfigError(f"client:{method.lower()}(): client was closed")
        text = args.text(f"client:{method.lower()}", url, name="URL")
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"client:{method.lower()}(): {text!r} is not an http(s) URL")
        return Request(self, method, text)

    def get(self, url: Any) -> Request:
        return self._request("GET", url)

    def post(self, url: Any) -> Request:
        return self._request("POST", url)

    def put(self, url: Any) -> Request:
        return self._request("PUT", url)

    def close(self) -> None:
        self.closed = True

    def session(self) -> aiohttp.ClientSession:
        """The running loop's connection pool for this client's options."""
        return loop_resources.shared(("http", self.pool), lambda: _session(*self.pool), _close)


def _form_value(what: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{what}: the value of {key!r} must be a UTF-8 string")
    return value


class Request(LuaObject):
    """A request being built; `send()` sends it (see the module's text)."""

    lua_name = "Request"
    lua_methods: ClassVar[frozenset[str]] = frozenset(
        {
            "header",
            "headers",
            "basic_auth",
            "bearer_auth",
            "body",
            "form_url_encoded",
            "form_multipart_data",
            "timeout",
            "aws_sign_v4",
            "send",
        }
    )

    def __init__(self, client: Client, method: str, url: str) -> None:
        self.client = client
        self.method = method
        self.url = url
        self._headers: list[tuple[str, str]] = []
        if client.user_agent is not None:
            self._headers.append(("User-Agent", client.user_agent))
        self._body: bytes | aiohttp.MultipartWriter | None = None
        self._timeout = client.timeout
        self._sent = False

    def header(self, name: Any, value: Any) -> Request:
        """Add a header (a name given twice is sent twice)."""
        what = "request:header"
        self._headers.append((args.text(what, name), args.text(what, value)))
        return self

    def headers(self, headers: Any) -> Request:
        if not isinstance(headers, dict):
            raise ConfigError("request:headers(): expected a table of name = value")
        for name, value in headers.items():
            self.header(name, value)
        return self

    def basic_auth(self, username: Any, password: Any = None) -> Request:
        user = args.text("request:basic_auth", username, name="username")
        secret = "" if password is None else args.text("request:basic_auth", password)
        token = base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")
        self._headers.append(("Authorization", f"Basic {token}"))
        return self

    def bearer_auth(self, token: Any) -> Request:
        self._headers.append(("Authorization", f"Bearer {args.text('request:bearer_auth', token)}"))
        return self

    def body(self, body: Any) -> Request:
        self._body = args.data("request:body", body, name="body")
        return self

    def form_url_encoded(self, params: Any) -> Request:
        what = "request:form_url_encoded"
        if not isinstance(params, dict):
            raise ConfigError(f"{what}(): expected a table of name = value")
        pairs = [(str(k), _form_value(what, str(k), v)) for k, v in sorted(params.items())]
        self._body = urllib.parse.urlencode(pairs).encode("ascii")
        self._headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        return self

    def form_multipart_data(self, params: Any) -> Request:
        """A multipart/form-data body: text fields, binary strings as
        application/octet-stream, `{data=, file_name=}` tables as files."""
        if not isinstance(params, dict):
            raise ConfigError("request:form_multipart_data(): expected a table of name = value")
        writer = aiohttp.MultipartWriter("form-data")
        for name, field in sorted(params.items()):
            value, filename = field, None
            if isinstance(field, dict) and {"data", "file_name"} <= set(field):
                value = args.data("form_multipart_data", field["data"])
                filename = field["file_name"]
            if isinstance(value, str) and filename is None:
                part = writer.append(value, {"Content-Type": "text/plain; charset=utf-8"})
            elif isinstance(value, str | bytes):
                data = value.encode() if isinstance(value, str) else value
                part = writer.append(data, {"Content-Type": "application/octet-stream"})
            else:
                raise ConfigError(f"request:form_multipart_data(): bad value for {name!r}")
            disposition = {"name": str(name)} | ({"filename": str(filename)} if filename else {})
            part.set_content_disposition("form-data", quote_fields=False, **disposition)
        self._body = writer
        return self

    def timeout(self, duration: Any) -> Request:
        self._timeout = _duration("request:timeout", duration)
        return self

    def aws_sign_v4(self, params: Any) -> Request:
        raise ConfigError("request:aws_sign_v4(): not supported yet (kumo.crypto is not here)")

    async def send(self) -> Response:
        """Send the request; the response with its whole body."""
        if self._sent:
            raise ConfigError("request:send(): this request was already sent")
        if self.client.closed:
            raise ConfigError("request:send(): client was closed")
        self._sent = True
        skip = () if self.client.user_agent is not None else ("User-Agent",)
        try:
            async with self.client.session().request(
                self.method,
                self.url,
                headers=self._headers,
                data=self._body,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                skip_auto_headers=skip,
            ) as response:
                body = await _read(response)
                headers: Headers = [
                    (name.decode("latin-1").lower(), value) for name, value in response.raw_headers
                ]
                return Response(response.status, headers, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {self._timeout:g} s"
            raise PolicyIoError("request:send", f"{self.method} {self.url}: {reason}") from exc

    def lua_tostring(self) -> str:
        return f"Request({self.method} {self.url})"


async def _read(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_BODY:
            raise PolicyIoError("request:send", f"the response body is over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@kumo_function("http.build_client")
def build_client(options: Any = None) -> Client:
    """`kumo.http.build_client{user_agent=, timeout=, pool_idle_timeout=, ...}`."""
    if options is None or options == []:
        options = {}
    if not isinstance(options, dict):
        raise ConfigError("kumo.http.build_client: expected a table of options")
    return Client(options)


_FORM_SAFE = "*-._"  # what application/x-www-form-urlencoded leaves as it is (and ' ' → '+')


def _form_encode(text: str) -> str:
    return urllib.parse.quote_plus(text, safe=_FORM_SAFE).replace("~", "%7E")


@kumo_function("http.build_url")
def build_url(base: Any, params: Any = None) -> str:
    """`kumo.http.build_url(BASE, PARAMS)`: BASE with PARAMS added to its query (in key
    order), form-encoded."""
    text = args.text("kumo.http.build_url", base, name="base")
    parts = urllib.parse.urlsplit(text)
    if not parts.scheme or (parts.scheme in ("http", "https", "ws", "wss") and not parts.netloc):
        raise ConfigError(f"kumo.http.build_url: {text!r} is not an absolute URL")
    if params is None or params == []:
        params = {}
    if not isinstance(params, dict):
        raise ConfigError("kumo.http.build_url: PARAMS must be a table of name = value")
    added = "&".join(
        f"{_form_encode(str(k))}={_form_encode(_param(v))}" for k, v in sorted(params.items())
    )
    query = "&".join(part for part in (parts.query, added) if part)
    path = parts.path or ("/" if parts.netloc else "")
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


def _param(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError("kumo.http.build_url: a parameter value must be a string or number")
    return str(value)
