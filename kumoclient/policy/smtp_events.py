"""The SMTP listener's events fired with KumoMTA's arguments, their answers checked and typed.

Each function fires one event on a runtime; `kumo.reject` / `kumo.disconnect` in the handler
raise PolicyReject (with its disconnect mode), any other failure and an answer of the wrong
kind raise PolicyError naming the handler's file:line. The exception is
`smtp_server_rewrite_response`: a failure (a `kumo.reject` too) is logged and the reply is
sent as it was, as KumoMTA does. Without a handler an event answers as if it returned nil.
"""

from __future__ import annotations

from typing import Any

from lupa import lua54

from kumoclient import logs
from kumoclient.configs import ListenerOverrides
from kumoclient.core.listener_domain import ListenerDomain
from kumoclient.core.smtp_auth import Authenticated, Credentials, admitted, admitted_as
from kumoclient.errors import ConfigError, PolicyError
from kumoclient.policy.conn_meta import ConnectionMeta
from kumoclient.policy.listener_config import make_listener_domain, overrides
from kumoclient.policy.message.addresses import EnvelopeAddress
from kumoclient.policy.results import Fired, describe, location
from kumoclient.policy.runtime import PolicyRuntime

log = logs.get_logger(__name__)

REWRITE = "smtp_server_rewrite_response"


async def _fire(runtime: PolicyRuntime, event: str, *args: Any) -> Fired:
    fired = await runtime.fire(event, *args)
    if fired.failed:
        runtime.raise_failure(event, fired)
    return fired


def _bad(fired: Fired, event: str, expected: str) -> PolicyError:
    return PolicyError(
        f"{fired.where}: {event} handler returned {describe(fired.value)}; expected {expected}",
        location=fired.where,
    )


async def dynamic_parameters(
    runtime: PolicyRuntime, listener: str, meta: ConnectionMeta
) -> ListenerOverrides | None:
    """`smtp_server_get_dynamic_parameters(listener, conn_meta)`: the keys it overrides."""
    event = "smtp_server_get_dynamic_parameters"
    fired = await _fire(runtime, event, listener, meta)
    if fired.value is None:
        return None
    try:
        return overrides(runtime.host.to_python(fired.value))
    except ConfigError as exc:
        raise PolicyError(f"{fired.where}: {exc}", location=fired.where) from exc


async def connection_accepted(runtime: PolicyRuntime, meta: ConnectionMeta) -> None:
    """`smtp_server_connection_accepted(conn_meta)`."""
    await _fire(runtime, "smtp_server_connection_accepted", meta)


async def ehlo(
    runtime: PolicyRuntime, domain: str, meta: ConnectionMeta, extensions: list[str] | None
) -> list[str] | None:
    """`smtp_server_ehlo(domain, conn_meta, extensions)` (HELO: no extensions, and what the
    handler returns is not looked at); the extensions to advertise instead, or None."""
    if extensions is None:
        await _fire(runtime, "smtp_server_ehlo", domain, meta)
        return None
    fired = await _fire(runtime, "smtp_server_ehlo", domain, meta, extensions)
    if fired.value is None:
        return None
    value = runtime.host.to_python(fired.value) if lua54.lua_type(fired.value) else None
    if value == {}:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _bad(fired, "smtp_server_ehlo", "a list of extension strings or nil")
    return [" ".join(item.split()) for item in value if item.strip()]


async def mail_from(runtime: PolicyRuntime, sender: str, meta: ConnectionMeta) -> None:
    """`smtp_server_mail_from(sender, conn_meta)`."""
    await _fire(runtime, "smtp_server_mail_from", EnvelopeAddress(sender), meta)


async def rcpt_to(runtime: PolicyRuntime, recipient: str, meta: ConnectionMeta) -> None:
    """`smtp_server_rcpt_to(recipient, conn_meta)`."""
    await _fire(runtime, "smtp_server_rcpt_to", EnvelopeAddress(recipient), meta)


async def listener_domain(
    runtime: PolicyRuntime, domain: str, listener: str, meta: ConnectionMeta
) -> ListenerDomain | None:
    """`get_listener_domain(domain, listener, conn_meta)`: kumo.make_listener_domain's
    object (a plain table of its keys is taken too), or None."""
    fired = await _fire(runtime, "get_listener_domain", domain, listener, meta)
    if fired.value is None:
        return None
    if lua54.lua_type(fired.value) == "table":
        found = runtime.host.internal.opaque_of(fired.value)
        if isinstance(found, ListenerDomain):
            return found
        try:
            return make_listener_domain(runtime.host.to_python(fired.value))
        except ConfigError as exc:
            raise PolicyError(f"{fired.where}: {exc}", location=fired.where) from exc
    raise _bad(fired, "get_listener_domain", "kumo.make_listener_domain{...} or nil")


async def auth_plain(
    runtime: PolicyRuntime, credentials: Credentials, meta: ConnectionMeta
) -> Authenticated | None:
    """`smtp_server_auth_plain(authz, authc, password, conn_meta)`: who the client is, or None
    (false, nil, or no handler)."""
    event = "smtp_server_auth_plain"
    if not runtime.has_handler(event):
        return None
    fired = await _fire(
        runtime, event, credentials.authz, credentials.authc, credentials.password, meta
    )
    if fired.value is True:
        return admitted(credentials)
    if fired.value is None or fired.value is False:
        return None
    info = runtime.host.to_python(fired.value) if lua54.lua_type(fired.value) else None
    if not isinstance(info, dict):
        raise _bad(fired, event, "true, false or an AuthInfo table")
    try:
        return admitted_as(_identities(info.get("identities")), _strings(info.get("groups")))
    except ValueError as exc:
        raise PolicyError(f"{fired.where}: {event}: {exc}", location=fired.where) from exc


def _identities(value: Any) -> list[tuple[str, str]]:
    if value is None or value == {}:
        return []
    if not isinstance(value, list):
        raise ValueError("AuthInfo identities must be a list of {identity=, context=}")
    found = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("identity"), str):
            raise ValueError("AuthInfo identities must be a list of {identity=, context=}")
        found.append((entry["identity"], str(entry.get("context", "GenericAuth"))))
    return found


def _strings(value: Any) -> list[str]:
    if value is None or value == {}:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("AuthInfo groups must be a list of strings")
    return value


async def rewrite_response(
    runtime: PolicyRuntime, code: int, text: str, command: str | None, meta: ConnectionMeta
) -> tuple[int, str]:
    """`smtp_server_rewrite_response(status, response, command, conn_meta)`: the code and text
    to send; a failure or a garbage answer is logged and changes nothing."""
    fired = await runtime.fire(REWRITE, code, text, command, meta)
    problem: str | None = None
    if fired.status == "ok":
        new_code, new_text = fired.value, fired.detail
        if new_code is not None and (
            isinstance(new_code, bool) or not isinstance(new_code, int) or not 200 <= new_code < 600
        ):
            problem = f"{fired.where}: returned {describe(new_code)}; expected a status code or nil"
        elif new_text is not None and not isinstance(new_text, str):
            problem = f"{fired.where}: returned {describe(new_text)}; expected a text or nil"
        else:
            return new_code if new_code is not None else code, (
                new_text if new_text is not None else text
            )
    elif fired.status == "error":
        problem = str(fired.value)
    elif fired.status == "reject":
        problem = f"{fired.where}: kumo.reject is not allowed in {REWRITE}"
    if problem is not None:
        log.error(
            f"{REWRITE} event failed; the reply is sent unchanged",
            error=problem,
            policy_location=location(problem) or fired.where,
        )
    return code, text
