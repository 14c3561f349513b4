"""The response objects of `kumo.http`: `Response` (status, headers, body) and the `HeaderMap`
of its headers, as KumoMTA's reference pages describe them.

The body is read whole when the request is sent (KumoMTA reads it on `text()`/`bytes()`), up
to MAX_BODY bytes. Once `text()` or `bytes()` has taken the body, `headers()`,
`content_length()`, `text()` and `bytes()` are errors, as in KumoMTA; the status methods go on
working.
"""

from __future__ import annotations

import http
from collections.abc import Iterator
from typing import Any, ClassVar

import webencodings

from kumoclient.errors import ConfigError
from kumoclient.policy.api import LuaObject

MAX_BODY = 256 * 1024 * 1024  # the Lua state's own memory limit: a larger body cannot fit

Headers = list[tuple[str, bytes]]  # lower-case names, values as sent


class HeaderMap(LuaObject):
    """Response headers: `map[name]` (any case) is the first value, `pairs(map)` every one."""

    lua_name = "HeaderMap"

    def __init__(self, headers: Headers) -> None:
        self.headers = headers

    def lua_index(self, key: Any) -> Any:
        if not isinstance(key, str):
            return None
        wanted = key.lower()
        return next((value for name, value in self.headers if name == wanted), None)

    def lua_pairs(self) -> Iterator[tuple[Any, Any]]:
        return iter(self.headers)

    def lua_len(self) -> int:
        return len(self.headers)


def _charset(headers: Headers) -> str | None:
    for name, value in headers:
        if name == "content-type":
            for parameter in value.decode("latin-1").split(";")[1:]:
                key, _, text = parameter.partition("=")
                if key.strip().lower() == "charset":
                    return text.strip().strip('"')
    return None


class Response(LuaObject):
    """What `request:send()` returns (see the module's text)."""

    lua_name = "Response"
    lua_methods: ClassVar[frozenset[str]] = frozenset(
        {
            "status_code",
            "status_reason",
            "status_is_informational",
            "status_is_success",
            "status_is_redirection",
            "status_is_client_error",
            "status_is_server_error",
            "headers",
            "content_length",
            "bytes",
            "text",
        }
    )

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status = status
        self._headers: Headers | None = headers
        self._body = body

    def status_code(self) -> int:
        return self.status

    def status_reason(self) -> str | None:
        try:
            return http.HTTPStatus(self.status).phrase
        except ValueError:
            return None

    def status_is_informational(self) -> bool:
        return 100 <= self.status < 200

    def status_is_success(self) -> bool:
        return 200 <= self.status < 300

    def status_is_redirection(self) -> bool:
        return 300 <= self.status < 400

    def status_is_client_error(self) -> bool:
        return 400 <= self.status < 500

    def status_is_server_error(self) -> bool:
        return 500 <= self.status < 600

    def _unread(self, method: str) -> Headers:
        if self._headers is None:
            raise ConfigError(
                f"response:{method}(): the body was already taken by text() or bytes()"
            )
        return self._headers

    def headers(self) -> HeaderMap:
        return HeaderMap(self._unread("headers"))

    def content_length(self) -> int | None:
        for name, value in self._unread("content_length"):
            if name == "content-length" and value.strip().isdigit():
                return int(value)
        return None

    def bytes(self) -> bytes:
        self._unread("bytes")
        self._headers = None
        return self._body

    def text(self) -> str:
        """The body decoded by its byte-order mark, else the `charset` of its Content-Type,
        else as UTF-8; malformed sequences become U+FFFD."""
        charset = _charset(self._unread("text"))
        self._headers = None
        fallback = webencodings.lookup(charset) if charset else None
        text, _encoding = webencodings.decode(self._body, fallback or "utf-8", errors="replace")
        return str(text)

    def lua_tostring(self) -> str:
        return f"Response({self.status})"
