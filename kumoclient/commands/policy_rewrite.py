"""`kumoclient policy rewrite`: the rewrite hook on one reply, or replayed over log files.

`--response TEXT` runs the policy's `smtp_client_rewrite_delivery_status` on one reply and
prints what it decides; `--replay LOGFILE...` runs it on every TransientFailure and Bounce
record of existing delivery logs and prints what would change.

A response that is not an SMTP reply is ReplyParseError (exit 65); a log file that cannot be
read is NoInput (66); one that holds something other than log records, or records without the
fields a replay needs, is BadInput (65) naming the file and line.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TextIO

import aiofiles

from kumoclient.commands.inputs import text_option
from kumoclient.core import log_record
from kumoclient.core.queue_name import parse_queue_name
from kumoclient.core.reply import (
    LITERAL_CRLF,
    SPACE,
    parse_one_line,
    single_line,
    strip_rewrite_note,
)
from kumoclient.errors import BadInput, LogRecordError, NoInput, UsageError
from kumoclient.policy.runtime import PolicyRuntime
from kumoclient.records import LogRecord, QueueName, Reply, RewriteOutcome

EX_OK = 0
REPLAYED = ("TransientFailure", "Bounce")


@dataclass(frozen=True, slots=True)
class PolicyRewriteOptions:
    """`policy rewrite FILE (--response TEXT [--domain D --tenant T --campaign C
    --routing-domain R] | --replay LOGFILE...) [--line-break literal|space]`."""

    file: Path
    response: str | None = None
    replay: tuple[Path, ...] = ()
    domain: str = "example.com"
    tenant: str | None = None
    campaign: str | None = None
    routing_domain: str | None = None
    line_break: Literal["literal", "space"] = "literal"


def policy_rewrite(options: PolicyRewriteOptions, out: TextIO) -> int:
    """Run the hook on `--response`, or replay `--replay` logs; print the outcome."""
    if options.response is None and not options.replay:
        raise UsageError("policy rewrite: give --response TEXT or --replay LOGFILE...")
    if not options.domain:
        raise UsageError("policy rewrite: --domain must not be empty")
    runtime = PolicyRuntime(options.file)
    line_break = LITERAL_CRLF if options.line_break == "literal" else SPACE
    if options.replay:
        return runtime.run(_replay(runtime, options.replay, line_break, out))
    assert options.response is not None
    reply = parse_one_line(text_option("--response", options.response))
    queue = QueueName(
        text_option("--domain", options.domain).lower(),
        options.tenant and text_option("--tenant", options.tenant),
        options.campaign and text_option("--campaign", options.campaign),
        options.routing_domain and text_option("--routing-domain", options.routing_domain),
    )
    outcome = runtime.run(runtime.rewrite_delivery_status(reply, queue, line_break))
    _print_outcome(reply, queue, outcome, line_break, out)
    return EX_OK


def _print_outcome(
    reply: Reply, queue: QueueName, outcome: RewriteOutcome, line_break: str, out: TextIO
) -> None:
    out.write(f"response:    {single_line(reply, line_break)}\n")
    out.write(
        f"arguments:   domain={queue.domain} tenant={_lua(queue.tenant)} "
        f"campaign={_lua(queue.campaign)} "
        f"routing_domain={queue.routing_domain or queue.domain}\n"
    )
    if outcome.rewritten:
        out.write(f"code:        {outcome.original_code} -> {outcome.reply.code} (rewritten)\n")
    elif outcome.error:
        out.write(
            f"code:        {outcome.original_code} (no change: the hook failed: {outcome.error})\n"
        )
    else:
        out.write(f"code:        {outcome.original_code} (no change)\n")
    out.write(f"disposition: {outcome.disposition.value}\n")
    out.write(f"result:      {single_line(outcome.reply, line_break)}\n")


def _lua(value: str | None) -> str:
    return "nil" if value is None else repr(value)


@dataclass(frozen=True, slots=True)
class _Replayed:
    record_id: str
    recipient: str
    record_type: str
    outcome: RewriteOutcome


async def _replay(
    runtime: PolicyRuntime, files: tuple[Path, ...], line_break: str, out: TextIO
) -> int:
    seen = changed = 0
    for path in files:
        async for number, line in _log_lines(path):
            replayed = await _replay_line(runtime, line, f"{path}:{number}", line_break)
            if replayed is None:
                continue
            seen += 1
            outcome = replayed.outcome
            if outcome.disposition.value != replayed.record_type or outcome.rewritten:
                changed += 1
                out.write(
                    f"{path}:{number} {replayed.record_id} {replayed.recipient}: "
                    f"{replayed.record_type} {outcome.original_code} -> "
                    f"{outcome.disposition.value} {outcome.reply.code}\n"
                )
    out.write(f"{seen} records replayed, {changed} would change\n")
    return EX_OK


async def _log_lines(path: Path) -> AsyncIterator[tuple[int, str]]:
    """The lines of a log file, numbered, streamed (aiofiles: a day of records is read a
    line at a time, off the event loop, never whole into memory)."""
    offset = 0
    try:
        async with aiofiles.open(path, "rb") as lines:
            number = 0
            async for raw in lines:
                number += 1
                try:
                    yield number, raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise BadInput(
                        f"{path}: not a delivery log: byte {offset + exc.start} is not UTF-8 "
                        f"({exc.reason})"
                    ) from exc
                offset += len(raw)
    except OSError as exc:
        raise NoInput(str(path), exc.strerror or str(exc)) from exc


async def _replay_line(
    runtime: PolicyRuntime, line: str, where: str, line_break: str
) -> _Replayed | None:
    if not line.strip():
        return None
    try:
        fields = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{where}: not a JSON log record: {exc.msg}") from exc
    if isinstance(fields, dict) and fields.get("type") not in REPLAYED:
        return None
    reply, queue, record = _decoded(fields, where)
    outcome = await runtime.rewrite_delivery_status(reply, queue, line_break)
    return _Replayed(record.id, record.recipient, record.type.value, outcome)


def _decoded(fields: object, where: str) -> tuple[Reply, QueueName, LogRecord]:
    """The reply (without an earlier rewrite's note), the queue and the record of a line."""
    try:
        if isinstance(fields, dict):
            if log_record.decode_response(fields.get("response")) is None:
                raise BadInput(f"{where}: the log record has no 'response' field")
            if fields.get("queue") is None:
                raise BadInput(f"{where}: the log record has no 'queue' field")
        record = log_record.decode(fields)
    except LogRecordError as exc:
        raise BadInput(f"{where}: not a log record this replay can read: {exc}") from exc
    assert record.response is not None
    content, code_before = strip_rewrite_note(record.response.content)
    reply = replace(record.response, code=code_before or record.response.code, content=content)
    return reply, parse_queue_name(record.queue), record
