"""What a fired event answered (`Fired`), and the checks of the values handlers return."""

from __future__ import annotations

from typing import Any, NamedTuple

from lupa import lua54

from kumoclient.records import AuthInfo

_MAX_CODE = 65535


class Fired(NamedTuple):
    """A handler call's outcome: status 'none' (no handler), 'ok' (value: the first result,
    detail: the second), 'error' (value: the message naming file:line, detail: the Lua
    traceback) or 'reject' (value: the code, detail: the text, disconnect: `If421` for
    kumo.reject, kumo.disconnect's mode); `where` is the file:line of the handler's `kumo.on`.
    A named tuple: made once per handler call, it costs a fifth of a frozen dataclass on the
    rewrite hook's hot path."""

    status: str
    where: str | None = None
    value: Any = None
    detail: Any = None
    disconnect: Any = None

    @property
    def failed(self) -> bool:
        """True for 'error' and 'reject'."""
        return self.status in ("error", "reject")


def status_code(value: Any) -> tuple[int | None, str | None]:
    """The code a rewrite handler returned, or None and a description of the problem."""
    if value is None:
        return None, None
    if isinstance(value, bool) or lua54.lua_type(value) is not None:
        return None, f"{describe(value)}; expected a status code or nil"
    number: float | int | None = None
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None, f"the string {value!r}; expected a status code or nil"
    if number is None:
        return None, f"{describe(value)}; expected a status code or nil"
    if isinstance(number, float) and not number.is_integer():
        return None, f"{number!r}, which is not a whole number"
    if not 0 <= number <= _MAX_CODE:
        return None, f"{number!r}, which is out of range for a status code"
    return int(number), None


def describe(value: Any) -> str:
    """A value as an error message names it."""
    kind = lua54.lua_type(value)
    if kind is not None:
        return f"a {kind}"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    return repr(value)


def location(message: object) -> str | None:
    """`file:line` from the front of a Lua error message, when it has one."""
    if not isinstance(message, str):
        return None
    head = message.split(": ", 1)[0]
    path, _, line = head.rpartition(":")
    return head if path and line.isdigit() else None


IDENTITY_CONTEXTS = frozenset(
    {
        "SmtpAuthPlainAuthentication",
        "SmtpAuthPlainAuthorization",
        "HttpBasicAuth",
        "BearerToken",
        "ProxyAuthRfc1929",
        "LocalSystem",
        "GenericAuth",
    }
)


def auth_info(value: Any) -> AuthInfo:
    """An AuthInfo table a handler returned (`{identities = {{identity, context}},
    groups = {...}}`, KumoMTA's shape); ValueError saying what is wrong."""
    if not isinstance(value, dict):
        raise ValueError("expected true, false or an AuthInfo table")
    unknown = set(value) - {"identities", "groups", "peer_address"}
    if unknown:
        raise ValueError(f"unknown AuthInfo field {sorted(unknown)[0]}")
    identities: list[tuple[str, str]] = []
    for entry in value.get("identities") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("identity"), str):
            raise ValueError("each AuthInfo identity is {identity = '...', context = '...'}")
        context = entry.get("context", "GenericAuth")
        if context not in IDENTITY_CONTEXTS:
            raise ValueError(f"unknown identity context {context!r}")
        identities.append((entry["identity"], context))
    groups = value.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ValueError("AuthInfo groups is a list of strings")
    return AuthInfo(None, tuple(identities), tuple(groups))
