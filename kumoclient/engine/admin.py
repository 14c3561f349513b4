"""The work behind `kumoclient run`, `inject` and `queue`; the CLI only parses and prints."""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from kumoclient.core.queue_name import queue_name_for
from kumoclient.engine.daemon import Daemon, DaemonOptions, event_loop_factory
from kumoclient.errors import ConfigError, KumoClientError
from kumoclient.records import SpooledMessage
from kumoclient.spool import Spool, Submission

EX_OK = 0
_BAD_ADDRESS = re.compile(r"[\r\n\x00<>\s]")
_BARE_LF = re.compile(rb"(?<!\r)\n")


class BadInput(KumoClientError):
    """Input data that cannot be accepted (exit 65)."""


class BadUsage(KumoClientError):
    """An option that cannot be used (exit 64)."""


def run(args: argparse.Namespace) -> int:
    """`kumoclient run`."""
    options = DaemonOptions(args.policy, args.data_dir, args.listen, args.http, args.workers)
    daemon = Daemon(options)
    loop_factory = event_loop_factory()
    daemon.start_workers(loop_factory)  # forks: before any event loop or thread exists
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(daemon.run())
    return EX_OK


def check_address(address: str, *, mailbox: bool) -> str:
    """An envelope address, refused with a clear reason when it cannot be one."""
    if _BAD_ADDRESS.search(address):
        raise BadInput(f"invalid address {address!r}: it contains CR, LF, NUL, <, > or spaces")
    if mailbox and address.count("@") != 1:
        raise BadInput(f"invalid address {address!r}: expected local-part@domain")
    if mailbox and not all(address.split("@")):
        raise BadInput(f"invalid address {address!r}: expected local-part@domain")
    return address


def inject(args: argparse.Namespace, stdin: BinaryIO, out: TextIO) -> int:
    """`kumoclient inject`: validate, then drop into `incoming/` atomically."""
    sender = check_address(args.sender, mailbox=bool(args.sender))
    recipients = tuple(check_address(r, mailbox=True) for r in args.recipients)
    meta: dict[str, str] = {}
    for item in args.meta:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise BadInput(f"--meta {item!r}: expected KEY=VALUE")
        meta[key] = value
    for key, value in (
        ("tenant", args.tenant),
        ("campaign", args.campaign),
        ("routing_domain", args.routing_domain),
    ):
        if value is not None:
            meta[key] = value
    content = read_message(args.file, stdin)
    spool = Spool(args.data_dir / "spool")
    ids = spool.drop(
        Submission(
            sender,
            recipients,
            content,
            tuple(dict(meta) for _ in recipients),
            reception_protocol="Inject",
        )
    )
    out.write("".join(f"{i}\n" for i in ids))
    return EX_OK


def read_message(file: str, stdin: BinaryIO) -> bytes:
    """A message from a file or stdin (`-`), with CRLF line ends; BadInput when unusable."""
    try:
        content = stdin.read() if file == "-" else Path(file).read_bytes()
    except OSError as exc:
        raise BadInput(f"cannot read {file}: {exc.strerror}") from exc
    if not content.strip():
        raise BadInput("the message is empty")
    if b"\x00" in content:
        raise BadInput("the message contains NUL bytes")
    content = _BARE_LF.sub(b"\r\n", content)  # files usually end lines with LF; SMTP needs CRLF
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    return content


@dataclass(slots=True)
class _QueueState:
    count: int = 0
    oldest: float = 0.0
    next_due: float = 0.0
    last_response: str | None = None


def _when(stamp: float, now: float) -> str:
    moment = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
    delta = stamp - now
    rel = "now" if abs(delta) < 1 else (f"in {delta:.0f}s" if delta > 0 else f"{-delta:.0f}s ago")
    return f"{moment} ({rel})"


def queue(args: argparse.Namespace, out: TextIO) -> int:
    """`kumoclient queue summary|list`: read-only, safe beside a running daemon."""
    root = args.data_dir / "spool"
    if not (root / "data").is_dir():
        raise ConfigError(f"no spool at {root} (use --data-dir)")
    spool = Spool(root)
    now = time.time()
    messages = list(spool.enumerate(quarantine=False))
    if args.view == "list":
        _list(messages, now, out)
    else:
        _summary(messages, now, out)
    if spool.unreadable:
        out.write(f"{spool.unreadable} unreadable entries (quarantined at the daemon's start)\n")
    return EX_OK


def _list(messages: list[SpooledMessage], now: float, out: TextIO) -> None:
    for m in messages:
        out.write(
            f"{m.id} {queue_name_for(m.recipient, m.meta)} <{m.sender}> -> <{m.recipient}> "
            f"attempts={m.attempts} due={_when(m.due, now)}"
            f"{' last=' + repr(m.last_response) if m.last_response else ''}\n"
        )
    out.write(f"{len(messages)} messages\n")


def _summary(messages: list[SpooledMessage], now: float, out: TextIO) -> None:
    queues: dict[str, _QueueState] = defaultdict(_QueueState)
    for m in messages:
        state = queues[queue_name_for(m.recipient, m.meta)]
        state.count += 1
        state.oldest = m.created if not state.oldest else min(state.oldest, m.created)
        state.next_due = m.due if not state.next_due else min(state.next_due, m.due)
        state.last_response = m.last_response or state.last_response
    out.write(f"{'queue':<40} {'count':>6}  oldest / next due / last response\n")
    for name in sorted(queues):
        q = queues[name]
        out.write(
            f"{name:<40} {q.count:>6}  {_when(q.oldest, now)} / {_when(q.next_due, now)}"
            f" / {q.last_response or '-'}\n"
        )
    out.write(f"{len(messages)} messages in {len(queues)} queues\n")
