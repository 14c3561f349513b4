"""The engine under test: a kumoclient Engine on a policy file, every queue routed to a scripted
MX, collecting the records it writes."""

from __future__ import annotations

import asyncio
import email.utils
import os
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from kumoclient.configs import EgressPathConfig, MxHost, QueueConfig, TlsMode
from kumoclient.engine.engine import Engine
from kumoclient.policy.config import parse_mx_entry
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyHolder, PolicyRuntime
from kumoclient.records import QueueName
from kumoclient.testing.mx import ScriptedMX
from kumoclient.testing.records import LogRecord

DEFAULT_SENDER = "sender@example.com"
DEFAULT_TIMEOUT = 30.0
_STOP_GRACE = 2.0


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
        meta: Mapping[str, Any] | None = None,
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
        meta: Mapping[str, Any] | None = None,
        via_smtp: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> LogRecord:
        """Submit one message and return the disposition of its first attempt: Delivery,
        Bounce or TransientFailure (not waiting for the retry), or Expiration."""
        [message_id] = await self.submit(
            recipient, sender=sender, content=content, meta=meta, via_smtp=via_smtp
        )
        return await self.next_disposition(message_id, timeout=timeout)
