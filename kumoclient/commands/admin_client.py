"""The client of the daemon's admin HTTP API (http/admin.py), used by `kumoclient admin`.

`check_url` refuses what cannot be the daemon's HTTP listener (UsageError, exit 64): a URL
that is not `http://` or `https://`, has no host, a port outside 1 to 65535, white space or
control characters, a query or a fragment. `call` makes one request with the standard
library's urllib. What can go wrong on the way is translated here, once: an error answer from
the daemon (JSON `{"error": ...}`) is AdminRefused (its status and message); no connection, a
timeout, or a server that does not answer in HTTP or JSON (the SMTP port, another web server)
is AdminUnavailable.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping

from kumoclient.errors import AdminRefused, AdminUnavailable, UsageError

_UNSAFE = re.compile(r"[\x00-\x20\x7f]")


def check_url(url: str) -> str:
    """`url` when it can be the daemon's HTTP listener; UsageError saying why otherwise."""
    problem = _url_problem(url)
    if problem is not None:
        raise UsageError(f"--url {url!r}: {problem}, e.g. 'http://127.0.0.1:8000'")
    return url


def _url_problem(url: str) -> str | None:
    if _UNSAFE.search(url):
        return "it contains white space or a control character"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port out of range, a bracket left open
        return f"not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "expected an http:// or https:// URL"
    if not parts.hostname:
        return "the URL has no host"
    if port == 0:
        return "port 0 is not a port to connect to"
    if parts.query or parts.fragment:
        return "the URL must not have a query or a fragment"
    return None


def call(
    url: str,
    method: str,
    path: str,
    body: Mapping[str, object] | None = None,
    *,
    auth: tuple[str, str] | None = None,
    timeout: float = 30.0,
) -> object:
    """One admin API call to the daemon at `url` (checked by `check_url`); the decoded JSON
    answer."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(check_url(url).rstrip("/") + path, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            payload = answer.read()
    except urllib.error.HTTPError as exc:
        raise _refusal(url, exc) from exc
    except urllib.error.URLError as exc:  # urllib's wrapper of OSError
        reason = exc.reason
        raise AdminUnavailable(
            url, _transport_problem(reason) if isinstance(reason, OSError) else str(reason)
        ) from exc
    except (OSError, http.client.HTTPException) as exc:  # reset, timeout, not HTTP at all
        raise AdminUnavailable(url, _transport_problem(exc)) from exc
    try:
        return json.loads(payload or b"null")
    except ValueError as exc:
        raise AdminUnavailable(
            url, "the answer is not JSON: is this a kumoclient HTTP listener?"
        ) from exc


def _refusal(url: str, exc: urllib.error.HTTPError) -> AdminRefused | AdminUnavailable:
    """The daemon's error answer (`{"error": ...}`, as every error of its HTTP listener is)
    is AdminRefused; an error answer in another form comes from some other server."""
    try:
        answer = json.loads(exc.read())
    except (ValueError, OSError, http.client.HTTPException):
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return AdminRefused(exc.code, answer["error"])
    return AdminUnavailable(
        url,
        f"the server answered {exc.code} {exc.reason} without a JSON error: "
        "is this a kumoclient HTTP listener?",
    )


def _transport_problem(exc: OSError | http.client.HTTPException) -> str:
    if isinstance(exc, http.client.BadStatusLine | http.client.RemoteDisconnected):
        return "the server did not answer in HTTP: is this the HTTP listener's port?"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__
