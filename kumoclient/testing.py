"""pytest plugin for testing kumoclient policies: a scripted MX and an engine on a policy file.

Registered as the `kumoclient` pytest11 entry point, so with kumoclient and pytest-asyncio
installed every pytest run has the fixtures `scripted_mx` and `kumo_engine`:

    async def test_over_quota_is_a_bounce(scripted_mx, kumo_engine):
        scripted_mx.reply("full@example.com", "452 4.2.2 The mailbox is over quota.")
        engine = await kumo_engine("policy.lua", mx=scripted_mx)
        result = await engine.deliver("full@example.com")
        assert result.type == "Bounce"

`kumo_engine` runs the policy file as the daemon would (same runtime, same queue and egress
configs, same rewrite hook) except that every queue is delivered to the scripted MX:
`mx_list` is replaced by the MX's address, `prohibited_hosts` emptied, TLS disabled and
`source_address` dropped, much as `kumoclient send --mx` does. See docs/testing.md.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_email_policy
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from kumoclient.engine.engine import Engine
from kumoclient.policy.config import parse_mx_entry
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyHolder, PolicyRuntime
from kumoclient.records import EgressPathConfig, MxHost, QueueConfig, QueueName, TlsMode

__all__ = [
    "DEFAULT_SENDER",
    "EngineFactory",
    "KumoEngine",
    "LogRecord",
    "Received",
    "ScriptedMX",
    "make_message",
]

DEFAULT_SENDER = "sender@example.com"
DEFAULT_TIMEOUT = 30.0
PHASES = ("MAIL", "RCPT", "DATA", "DOT")
FINAL_TYPES = frozenset({"Delivery", "Bounce", "Expiration", "AdminBounce"})
_STOP_GRACE = 2.0

_F = TypeVar("_F", bound=Callable[..., Any])


# --- the scripted MX -------------------------------------------------------------------------


class Received(NamedTuple):
    """One message the scripted MX accepted (its final `.` was answered 250)."""

    sender: str
    recipients: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        """The content parsed as an email message (headers, body)."""
        parsed = BytesParser(policy=default_email_policy).parsebytes(self.content)
        assert isinstance(parsed, EmailMessage)
        return parsed


class ScriptedMX:
    """An SMTP server on 127.0.0.1 (a free port) in the running event loop, answering per address.

    Every command is accepted (`250`, `354`) unless a reply is scripted for it:

        mx.reply("full@example.com", "452 4.2.2 The mailbox is over quota.")   # RCPT TO
        mx.reply("*", "421 4.3.2 System not accepting network messages")      # any recipient
        mx.reply("sender@example.com", "550 5.7.1 Sender refused", phase="MAIL")
        mx.reply("big@example.com", "552 5.3.4 Message too big", phase="DOT")

    Phases: `MAIL` (keyed by the sender), `RCPT`, `DATA` (the reply to the DATA command) and
    `DOT` (the reply to the final dot), keyed by recipient. `"*"` applies to every address that
    has no reply of its own. Accepted messages are appended to `received`. With `pipelining`,
    EHLO offers PIPELINING. Use as the `scripted_mx` fixture, or `async with ScriptedMX() as mx`.
    """

    def __init__(self, *, pipelining: bool = False, hostname: str = "mx.test") -> None:
        self.pipelining = pipelining
        self.hostname = hostname
        self.replies: dict[tuple[str, str], str] = {}
        self.received: list[Received] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._clients: set[_ScriptedSMTP] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """`127.0.0.1:<port>`: an `mx_list` entry for this server."""
        if self._server is None:
            raise RuntimeError("the scripted MX is not started")
        return f"127.0.0.1:{self.port}"

    def reply(self, address: str, reply: str, *, phase: str = "RCPT") -> None:
        """Answer `reply` (e.g. `"452 4.2.2 Over quota"`) to `address` in `phase`."""
        phase = phase.upper()
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
        code = reply[:3]
        if not (code.isdigit() and 200 <= int(code) <= 599 and reply[3:4] in ("", " ", "-")):
            raise ValueError(f"a reply starts with a status code 200-599, got {reply!r}")
        self.replies[(phase, address.lower())] = reply

    def scripted(self, phase: str, address: str) -> str | None:
        """The reply scripted for `address` in `phase` (or for `"*"`), if any."""
        found = self.replies.get((phase, address.lower()))
        return found if found is not None else self.replies.get((phase, "*"))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ScriptedSMTP(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, drop open connections and wait for their handlers to end."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for client in list(self._clients):
            if client.transport is not None:
                client.transport.close()
        await server.wait_closed()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=_STOP_GRACE)

    async def __aenter__(self) -> ScriptedMX:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # aiosmtpd handler hooks

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.scripted("MAIL", address)
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return reply or "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.scripted("RCPT", address)
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return reply or "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        replies = [self.scripted("DOT", rcpt) for rcpt in envelope.rcpt_tos]
        reply = next((r for r in replies if r is not None), None)
        if reply is not None and not reply.startswith("250"):
            return reply
        content = envelope.original_content or b""
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), content))
        return reply or "250 2.0.0 OK queued"


class _ScriptedSMTP(SMTP):
    def __init__(self, script: ScriptedMX) -> None:
        super().__init__(script, hostname=script.hostname, decode_data=False, enable_SMTPUTF8=True)
        self.script = script

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.script.connections += 1
        self.script._clients.add(self)
        super().connection_made(transport)
        handler = self._handler_coroutine
        if handler is not None:
            self.script._handlers.add(handler)
            handler.add_done_callback(self.script._handlers.discard)

    def connection_lost(self, error: Exception | None) -> None:
        self.script._clients.discard(self)
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        for rcpt in self.envelope.rcpt_tos if self.envelope is not None else []:
            reply = self.script.scripted("DATA", rcpt)
            if reply is not None and not reply.startswith("354"):
                await self.push(reply)
                return
        await super().smtp_DATA(arg)


# --- log records -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A log record of the engine (SPEC 6) with its response taken apart.

    `type` is `Reception`, `Delivery`, `TransientFailure`, `Bounce`, `Expiration` or
    `AdminBounce`; `code`, `enhanced_code` (`"4.2.2"`), `content` and `command` come from the
    record's `response` (None / `""` when it has none); `raw` is the record as logged.
    """

    type: str
    id: str
    recipient: str
    code: int | None
    enhanced_code: str | None
    content: str
    command: str | None
    num_attempts: int
    raw: dict[str, Any]

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LogRecord:
        response = record.get("response") or {}
        enhanced = response.get("enhanced_code")
        return cls(
            type=str(record["type"]),
            id=str(record["id"]),
            recipient=str(record.get("recipient", "")),
            code=response.get("code"),
            enhanced_code=None
            if enhanced is None
            else f"{enhanced['class']}.{enhanced['subject']}.{enhanced['detail']}",
            content=str(response.get("content") or ""),
            command=response.get("command"),
            num_attempts=int(record.get("num_attempts", 0)),
            raw=dict(record),
        )

    @property
    def response(self) -> str:
        """The response as one line: `500 4.2.2 text`."""
        parts = [str(self.code) if self.code is not None else "", self.enhanced_code or ""]
        return " ".join(p for p in [*parts, self.content] if p)

    @property
    def final(self) -> bool:
        """True for the records that end a message's life (all but Reception, TransientFailure)."""
        return self.type in FINAL_TYPES

    def __str__(self) -> str:
        return f"{self.type}: {self.response}" if self.code is not None else self.type


# --- the engine under test -------------------------------------------------------------------


def make_message(
    sender: str = DEFAULT_SENDER,
    recipients: Iterable[str] = ("recipient@example.com",),
    *,
    subject: str = "kumoclient policy test",
    body: str = "Hello from a kumoclient policy test.\r\n",
) -> bytes:
    """A small RFC 5322 message (CRLF line ends) from `sender` to `recipients`."""
    headers = [
        f"From: <{sender}>",
        f"To: {', '.join(f'<{r}>' for r in recipients)}",
        f"Subject: {subject}",
        f"Message-ID: <{uuid.uuid4().hex}@kumoclient.test>",
        f"Date: {email.utils.formatdate(localtime=False)}",
    ]
    text = "\r\n".join(headers) + "\r\n\r\n" + body
    return text.encode("utf-8")


def _content(content: bytes | str | None, sender: str, recipients: list[str]) -> bytes:
    if content is None:
        return make_message(sender, recipients)
    if isinstance(content, str):
        lines = content.replace("\r\n", "\n").split("\n")
        return "\r\n".join(lines).encode("utf-8")
    return content


class _RoutedPolicy(PolicyHolder):
    """The policy file, with every queue's mail sent to `mx_list` (as `kumoclient send --mx`):
    `get_queue_config` results get `mx_list` replaced and `get_egress_path_config` results get
    `prohibited_hosts = {}`, `enable_tls = 'Disabled'` and no `source_address` (the MX is on
    loopback); everything else is the policy's own.
    Each runtime the holder takes (at start and at every reload) is routed the same way."""

    def __init__(self, path: Path, mx_list: tuple[MxHost, ...], memo: MemoRegistry) -> None:
        self._mx_list = mx_list
        super().__init__(path, memo=memo)

    @property
    def current(self) -> PolicyRuntime:
        return self._routed

    @current.setter
    def current(self, runtime: PolicyRuntime) -> None:
        self._routed = _route(runtime, self._mx_list)


def _route(runtime: PolicyRuntime, mx_list: tuple[MxHost, ...]) -> PolicyRuntime:
    queue_config = runtime.get_queue_config
    egress_path_config = runtime.get_egress_path_config

    async def routed_queue_config(name: QueueName) -> QueueConfig:
        return replace(await queue_config(name), mx_list=mx_list)

    async def routed_egress_path_config(
        routing_domain: str, egress_source: str, site_name: str
    ) -> EgressPathConfig:
        egress = await egress_path_config(routing_domain, egress_source, site_name)
        return replace(
            egress, prohibited_hosts=(), enable_tls=TlsMode.DISABLED, source_address=None
        )

    runtime.get_queue_config = routed_queue_config  # type: ignore[method-assign]
    runtime.get_egress_path_config = routed_egress_path_config  # type: ignore[method-assign]
    return runtime


class KumoEngine:
    """A started kumoclient `Engine` on a policy file, collecting the log records it writes.

    `deliver()` submits one message and returns the disposition of its first attempt;
    `submit()` / `next_disposition()` / `final_disposition()` do the same in steps.
    `records` holds every record written so far, `dispositions` all but Reception.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.records: list[LogRecord] = []
        self._pending: defaultdict[str, asyncio.Queue[LogRecord]] = defaultdict(asyncio.Queue)
        engine.subscribe(self._seen)

    @classmethod
    async def start(
        cls,
        policy: str | os.PathLike[str],
        *,
        data_dir: Path,
        mx: ScriptedMX | str | None = None,
    ) -> KumoEngine:
        """Load `policy` (raises PolicyLoadError) and start an engine with its spool and logs
        under `data_dir`. `mx` (a ScriptedMX or an `mx_list` entry such as `"127.0.0.1:2525"`)
        receives all mail; without it the policy's own routing is used."""
        memo = MemoRegistry()  # kumo.memoize caches are per engine: no state between tests
        path = Path(policy)
        holder: PolicyHolder
        if mx is None:
            holder = PolicyHolder(path, memo=memo)
        else:
            address = mx.address if isinstance(mx, ScriptedMX) else mx
            holder = _RoutedPolicy(path, (parse_mx_entry(address),), memo)
        engine = Engine(holder, data_dir=data_dir)
        await engine.start()
        return cls(engine)

    async def stop(self) -> None:
        """Stop the engine (transactions in flight get two seconds); idempotent."""
        await self.engine.stop(grace=_STOP_GRACE)

    @property
    def dispositions(self) -> list[LogRecord]:
        """Every record but Reception, in the order written."""
        return [r for r in self.records if r.type != "Reception"]

    def _seen(self, record: dict[str, object]) -> None:
        entry = LogRecord.from_record(record)
        self.records.append(entry)
        if entry.type != "Reception":
            self._pending[entry.id].put_nowait(entry)

    async def submit(
        self,
        recipients: str | Iterable[str],
        *,
        sender: str = DEFAULT_SENDER,
        content: bytes | str | None = None,
        meta: Mapping[str, str] | None = None,
        via_smtp: bool = False,
    ) -> list[str]:
        """Spool a message for each recipient; their ids, in order.

        `content` defaults to `make_message(sender, recipients)`; a `str` gets CRLF line ends.
        `meta` sets `tenant`, `campaign`, `routing_domain`, `queue` or your own keys. With
        `via_smtp` the message is taken in as the SMTP listener takes it: the policy's
        `smtp_server_message_received` runs (meta starts empty; `kumo.reject` raises
        kumoclient.errors.SubmissionRefused).
        """
        rcpts = [recipients] if isinstance(recipients, str) else list(recipients)
        data = _content(content, sender, rcpts)
        if not via_smtp:
            return await self.engine.submit(sender, rcpts, data, dict(meta or {}))
        if meta:
            raise ValueError("via_smtp: meta is set by the policy's reception event, not given")
        smtputf8 = not all(a.isascii() for a in [sender, *rcpts])
        await self.engine.reception.accept_smtp(sender, rcpts, data, "127.0.0.1", smtputf8)
        # the Reception records are written just before accept_smtp returns: the last ones
        received = [r.id for r in self.records if r.type == "Reception"]
        return received[-len(rcpts) :]

    async def next_disposition(
        self, message_id: str, *, timeout: float = DEFAULT_TIMEOUT
    ) -> LogRecord:
        """The next record of `message_id` after Reception: each call returns the next one
        (TransientFailure of the first attempt, then of the second, ... then the final one)."""
        try:
            async with asyncio.timeout(timeout):
                return await self._pending[message_id].get()
        except TimeoutError:
            seen = [str(r) for r in self.records if r.id == message_id] or ["none"]
            raise TimeoutError(
                f"no disposition for message {message_id} within {timeout} s; "
                f"its records so far: {'; '.join(seen)}"
            ) from None

    async def final_disposition(
        self, message_id: str, *, timeout: float = DEFAULT_TIMEOUT
    ) -> LogRecord:
        """The record that ends the message's life (Delivery, Bounce, Expiration,
        AdminBounce), skipping TransientFailures; retries happen on the policy's schedule."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            left = max(0.0, deadline - loop.time())
            record = await self.next_disposition(message_id, timeout=left)
            if record.final:
                return record

    async def deliver(
        self,
        recipient: str,
        *,
        sender: str = DEFAULT_SENDER,
        content: bytes | str | None = None,
        meta: Mapping[str, str] | None = None,
        via_smtp: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> LogRecord:
        """Submit one message and return the disposition of its first attempt: Delivery,
        Bounce or TransientFailure (not waiting for the retry), or Expiration."""
        [message_id] = await self.submit(
            recipient, sender=sender, content=content, meta=meta, via_smtp=via_smtp
        )
        return await self.next_disposition(message_id, timeout=timeout)


# --- fixtures --------------------------------------------------------------------------------


class EngineFactory(Protocol):
    """The `kumo_engine` fixture: `await kumo_engine("policy.lua", mx=scripted_mx)`."""

    def __call__(
        self,
        policy: str | os.PathLike[str],
        *,
        mx: ScriptedMX | str | None = None,
        data_dir: Path | None = None,
    ) -> Awaitable[KumoEngine]: ...


def _needs_pytest_asyncio(fixture: _F) -> _F:
    """Without pytest-asyncio the fixtures exist but fail with what to install."""

    def missing() -> None:
        pytest.fail(
            f"the kumoclient fixture {fixture.__name__!r} needs pytest-asyncio: "
            "pip install pytest-asyncio"
        )

    missing.__name__ = fixture.__name__
    missing.__doc__ = fixture.__doc__
    return pytest.fixture(name=fixture.__name__)(missing)  # type: ignore[return-value]


try:
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - depends on the user's environment
    _async_fixture = _needs_pytest_asyncio  # type: ignore[assignment]


@_async_fixture
async def scripted_mx() -> AsyncIterator[ScriptedMX]:
    """A started ScriptedMX (no PIPELINING); stopped after the test."""
    async with ScriptedMX() as server:
        yield server


@_async_fixture
async def kumo_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[EngineFactory]:
    """Start engines: `engine = await kumo_engine("policy.lua", mx=scripted_mx)`.

    A relative policy path is taken from the test file's directory. Spool and logs go under
    the test's tmp_path (or `data_dir`); the policy's `init` is not run. Every engine started
    is stopped after the test.
    """
    started: list[KumoEngine] = []

    async def start(
        policy: str | os.PathLike[str],
        *,
        mx: ScriptedMX | str | None = None,
        data_dir: Path | None = None,
    ) -> KumoEngine:
        path = Path(policy)
        if not path.is_absolute():
            path = request.path.parent / path
        where = data_dir or tmp_path / f"kumo-engine-{len(started)}"
        engine = await KumoEngine.start(path, data_dir=where, mx=mx)
        started.append(engine)
        return engine

    yield start
    for engine in reversed(started):
        await engine.stop()
