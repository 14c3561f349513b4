"""`kumo.http.connect_websocket(URL)`: a websocket client on aiohttp, returned with the HTTP
response of its opening handshake.

`stream:recv()` waits for the next message (text, or the bytes of a binary one) and gives nil
once the server has closed the socket; `stream:recv_batch(DURATION)` gathers the messages
that arrive within DURATION (an empty list when none does; an error when the socket is closed
and nothing was gathered). `stream:close()` (a kumoclient addition) closes it at once; a
stream is also closed when the server closes it, at the end of a `local s <close>` scope, and
when its event loop ends.
"""

from __future__ import annotations

import asyncio
import itertools
import urllib.parse
from typing import Any, ClassVar

import aiohttp

from kumoclient.core.duration import parse_duration
from kumoclient.errors import ConfigError, PolicyIoError
from kumoclient.policy.api import LuaObject, Values, kumo_function
from kumoclient.policy.modules import args, loop_resources
from kumoclient.policy.modules.http_response import Headers, Response

CONNECT_TIMEOUT = 60.0
_DATA = (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)
_streams = itertools.count()


async def _close(stream: WebSocketStream) -> None:
    await stream.close()


class WebSocketStream(LuaObject):
    """The stream `connect_websocket` returns (see the module's text)."""

    lua_name = "WebSocketStream"
    lua_methods: ClassVar[frozenset[str]] = frozenset({"recv", "recv_batch", "close"})

    def __init__(
        self, url: str, session: aiohttp.ClientSession, socket: aiohttp.ClientWebSocketResponse
    ) -> None:
        self.url = url
        self._session = session
        self._socket = socket
        self._key = ("websocket", next(_streams))
        loop_resources.shared(self._key, lambda: self, _close)  # closed when the loop ends

    async def _next(self, timeout: float | None) -> str | bytes | None:
        """The next message; None once the socket is closed. TimeoutError after `timeout`."""
        if self._socket.closed:
            return None
        message = await self._socket.receive(timeout=timeout)
        if message.type in _DATA:
            return message.data  # type: ignore[no-any-return]
        if message.type == aiohttp.WSMsgType.ERROR:
            await self.close()
            raise PolicyIoError("stream:recv", f"{self.url}: {message.data}")
        await self.close()  # CLOSE, CLOSING, CLOSED
        return None

    async def recv(self) -> str | bytes | None:
        return await self._next(None)

    async def recv_batch(self, duration: Any) -> list[str | bytes]:
        seconds = parse_duration(duration, what="stream:recv_batch")
        deadline = asyncio.get_running_loop().time() + seconds
        batch: list[str | bytes] = []
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                message = await self._next(left)
            except TimeoutError:
                break
            if message is None:
                if not batch:
                    raise PolicyIoError("stream:recv_batch", f"{self.url}: websocket closed")
                break
            batch.append(message)
        return batch

    async def close(self) -> None:
        """Close the socket and its connection (a kumoclient addition)."""
        await self._socket.close()
        await self._session.close()
        loop_resources.forget(self._key)

    async def lua_close(self) -> None:  # type: ignore[override]  # awaited (policy.api)
        await self.close()

    def lua_tostring(self) -> str:
        return f"WebSocketStream({self.url})"


@kumo_function("http.connect_websocket")
async def connect_websocket(url: Any) -> Values:
    """`kumo.http.connect_websocket(URL)`: the stream and the handshake's response."""
    what = "kumo.http.connect_websocket"
    text = args.text(what, url, name="URL")
    if urllib.parse.urlsplit(text).scheme not in ("ws", "wss"):
        raise ConfigError(f"{what}: {text!r}: the URL must be ws:// or wss://")
    handshake: list[aiohttp.ClientResponse] = []

    async def answered(_: Any, __: Any, params: aiohttp.TraceRequestEndParams) -> None:
        handshake.append(params.response)

    tracing = aiohttp.TraceConfig()
    tracing.on_request_end.append(answered)
    session = aiohttp.ClientSession(trace_configs=[tracing])
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            socket = await session.ws_connect(text, timeout=aiohttp.ClientWSTimeout(ws_close=10.0))
    except (aiohttp.ClientError, TimeoutError) as exc:
        await session.close()
        raise PolicyIoError(what, f"{text}: {exc or type(exc).__name__}") from exc
    response = handshake[-1]
    headers: Headers = [(n.decode("latin-1").lower(), v) for n, v in response.raw_headers]
    return Values((WebSocketStream(text, session, socket), Response(response.status, headers, b"")))
