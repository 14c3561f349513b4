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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from kumoclient.commands.inputs import text_option
from kumoclient.core.queue_name import parse_queue_name
from kumoclient.core.reply import (
    LITERAL_CRLF,
    SPACE,
    parse_one_line,
    single_line,
    strip_rewrite_note,
)
from kumoclient.errors import BadInput, NoInput, UsageError
from kumoclient.policy.runtime import PolicyRuntime
from kumoclient.records import EnhancedCode, QueueName, Reply, RewriteOutcome

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
        for number, line in enumerate(_log_lines(path), 1):
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


def _log_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise NoInput(str(path), exc.strerror or str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"{path}: not a delivery log: byte {exc.start} is not UTF-8 ({exc.reason})"
        ) from exc


async def _replay_line(
    runtime: PolicyRuntime, line: str, where: str, line_break: str
) -> _Replayed | None:
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{where}: not a JSON log record: {exc.msg}") from exc
    if not isinstance(record, dict) or record.get("type") not in REPLAYED:
        return None
    reply, queue = _decoded(record, where)
    outcome = await runtime.rewrite_delivery_status(reply, queue, line_break)
    recipient = record.get("recipient")
    return _Replayed(str(record.get("id", "?")), str(recipient), record["type"], outcome)


def _decoded(record: dict[str, Any], where: str) -> tuple[Reply, QueueName]:
    """The reply (without an earlier rewrite's note) and the queue of a log record."""
    try:
        response = record["response"]
        enhanced = response.get("enhanced_code")
        code = (
            EnhancedCode(enhanced["class"], enhanced["subject"], enhanced["detail"])
            if enhanced
            else None
        )
        content, code_before = strip_rewrite_note(response["content"])
        reply = Reply(code_before or int(response["code"]), code, content, response.get("command"))
        queue = parse_queue_name(str(record["queue"]))
    except KeyError as exc:
        raise BadInput(f"{where}: the log record has no {exc.args[0]!r} field") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise BadInput(f"{where}: not a log record this replay can read: {exc}") from exc
    return reply, queue
