"""Helpers for the `msg` object tests: a message, a policy whose reception handler runs a
body of Lua, and what the handler left in the global `OUT`."""

from __future__ import annotations

from typing import Any

from kumoclient.policy.message import MessageView
from kumoclient.policy.runtime import PolicyRuntime
from tests.policy.conftest import LoadPolicy

CONTENT = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.net\r\n"
    b"X-Campaign-ID: 12345\r\nX-Mailer: foobar\r\nSubject: the subject\r\n\r\nThe body\r\n"
)
EVENT = "smtp_server_message_received"


def make_view(
    content: bytes = CONTENT,
    *,
    sender: str = "alice@example.com",
    recipient: str | list[str] = "bob@example.net",
    meta: dict[str, Any] | None = None,
) -> MessageView:
    return MessageView("0" * 31 + "1", sender, recipient, content, meta if meta else {})


async def run(
    load_policy: LoadPolicy, body: str, view: MessageView | None = None, *, prelude: str = ""
) -> tuple[MessageView, Any]:
    """Fire the reception event on `view` with a handler running `body`; the view and the
    Python form of the handler's global `OUT`."""
    runtime = load_policy(f"{prelude}\nkumo.on('{EVENT}', function(msg)\n{body}\nend)\n")
    view = view or make_view()
    await runtime.message_event(EVENT, view)
    return view, out(runtime)


def out(runtime: PolicyRuntime) -> Any:
    return runtime.host.to_python(runtime._lua.globals().OUT)
