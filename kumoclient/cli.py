"""Command line: argument parsing, output and exit codes only; the work happens elsewhere.

Exit codes follow sysexits: 0 ok, 64 usage, 65 bad input data, 69 unavailable,
75 temporary failure, 78 configuration error. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn, TextIO

from kumoclient import logs
from kumoclient.core.queue_name import parse_queue_name
from kumoclient.core.reply import (
    LITERAL_CRLF,
    SPACE,
    parse_one_line,
    single_line,
    strip_rewrite_note,
)
from kumoclient.engine import admin, admin_api, send
from kumoclient.engine.daemon import StartupError
from kumoclient.errors import KumoClientError, PolicyError, ReplyParseError, SpoolError
from kumoclient.policy.runtime import PolicyRuntime
from kumoclient.records import EnhancedCode, QueueName, Reply, RewriteOutcome

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_CONFIG = 78


class UsageError(Exception):
    """Bad command-line usage (exit 64)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The whole command-line grammar."""
    parser = _Parser(
        prog="kumoclient",
        description="asyncio SMTP delivery daemon with KumoMTA-compatible Lua policy",
    )
    parser.add_argument(
        "--log-format",
        choices=("json", "console"),
        default="json",
        help="operational log format on stderr (default: json)",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="info"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run the daemon")
    run.add_argument("--policy", type=Path, help="Lua policy file (default: the built-in one)")
    run.add_argument(
        "--data-dir",
        type=Path,
        help="spool in DIR/spool, log records in DIR/logs (default: ./kumoclient-data)",
    )
    run.add_argument("--listen", metavar="HOST:PORT", help="SMTP listener address")
    run.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="HTTP listener address (inject API, metrics); replaces the listen address of "
        "the policy's first kumo.start_http_listener, or adds a listener",
    )
    run.add_argument(
        "--workers",
        type=_worker_count,
        default=0,
        metavar="N",
        help="reception worker processes taking SMTP mail in beside the main process, which "
        "then only delivers (default: 0, everything in one process; 'auto': one per CPU "
        "beyond the first)",
    )

    inject = commands.add_parser("inject", help="put a message into the spool's incoming/ folder")
    inject.add_argument("--from", dest="sender", required=True, metavar="ADDR")
    inject.add_argument("--to", dest="recipients", required=True, action="append", metavar="ADDR")
    inject.add_argument("--tenant")
    inject.add_argument("--campaign")
    inject.add_argument("--routing-domain")
    inject.add_argument("--meta", action="append", default=[], metavar="K=V")
    inject.add_argument("--data-dir", type=Path, default=Path("kumoclient-data"))
    inject.add_argument("file", metavar="FILE|-", help="the message (RFC 5322), - for stdin")

    one = commands.add_parser(
        "send", help="one delivery attempt in the foreground, printing the SMTP conversation"
    )
    one.add_argument("--from", dest="sender", required=True, metavar="ADDR")
    one.add_argument("--to", dest="recipient", required=True, metavar="ADDR")
    one.add_argument("--policy", type=Path, help="policy file (default: the built-in one)")
    one.add_argument(
        "--mx", metavar="HOST:PORT", help="deliver to this host instead of the queue's mx_list"
    )
    one.add_argument("file", metavar="FILE|-", help="the message (RFC 5322), - for stdin")

    queue = commands.add_parser("queue", help="inspect the spool (also while the daemon runs)")
    queue.add_argument("view", choices=("summary", "list"))
    queue.add_argument("--data-dir", type=Path, default=Path("kumoclient-data"))

    _add_admin_parser(commands)

    policy = commands.add_parser("policy", help="check a policy file or try its rewrite hook")
    policy_commands = policy.add_subparsers(
        dest="policy_command", required=True, parser_class=_Parser
    )
    check = policy_commands.add_parser(
        "check", help="load a policy, run its init event, list its event handlers"
    )
    check.add_argument("file", type=Path)

    rewrite = policy_commands.add_parser(
        "rewrite", help="run smtp_client_rewrite_delivery_status on a response"
    )
    rewrite.add_argument("file", type=Path)
    source = rewrite.add_mutually_exclusive_group(required=True)
    source.add_argument("--response", help="an SMTP reply line, e.g. '452 4.2.2 mailbox full'")
    source.add_argument(
        "--replay",
        nargs="+",
        type=Path,
        metavar="LOGFILE",
        help="run every TransientFailure and Bounce record of these log files "
        "through the policy and print what would change",
    )
    rewrite.add_argument(
        "--domain", default="example.com", help="recipient domain (default: example.com)"
    )
    rewrite.add_argument("--tenant")
    rewrite.add_argument("--campaign")
    rewrite.add_argument("--routing-domain")
    rewrite.add_argument(
        "--line-break",
        choices=("literal", "space"),
        default="literal",
        help="how a multi-line response is joined (response_line_break)",
    )
    return parser


def _add_admin_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    control = commands.add_parser(
        "admin", help="administer a running daemon's queues over its HTTP listener"
    )
    control.add_argument(
        "action",
        choices=("suspend", "resume", "suspensions", "bounce", "retry", "queues"),
        help="suspend/resume delivery, list suspensions, bounce, retry now, show queues",
    )
    for part in ("domain", "tenant", "campaign"):
        control.add_argument(f"--{part}", help=f"select messages by {part}")
    control.add_argument("--reason", help="why (required for suspend and bounce)")
    control.add_argument("--duration", help="suspend: lift by itself after e.g. '1h'")
    control.add_argument("--id", help="resume: the suspension id")
    control.add_argument(
        "--everything", action="store_true", help="bounce: no selector means every message"
    )
    control.add_argument(
        "--url", default="http://127.0.0.1:8000", help="the daemon's HTTP listener"
    )
    control.add_argument("--user", help="HTTP Basic auth user (clients outside trusted_hosts)")
    control.add_argument("--password", help="HTTP Basic auth password")


def _worker_count(text: str) -> int:
    if text == "auto":
        return max(0, (os.cpu_count() or 1) - 1)
    try:
        count = int(text)
    except ValueError:
        count = -1
    if not 0 <= count <= 64:
        raise argparse.ArgumentTypeError(f"expected 0..64 or 'auto', got {text!r}")
    return count


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kumoclient` console script."""
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EX_USAGE
    logs.configure_logging(args.log_format, args.log_level)
    try:
        return _dispatch(args)
    except (UsageError, admin.BadUsage) as exc:
        print(f"kumoclient: {exc}", file=sys.stderr)
        return EX_USAGE
    except PolicyError as exc:
        print(_policy_error_line(exc), file=sys.stderr)
        return EX_CONFIG
    except (ReplyParseError, admin.BadInput) as exc:
        print(f"kumoclient: {exc}", file=sys.stderr)
        return EX_DATAERR
    except StartupError as exc:
        print(f"kumoclient: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except admin_api.AdminRefused as exc:
        print(f"kumoclient: {exc}", file=sys.stderr)
        return EX_DATAERR if 400 <= exc.status < 500 else EX_UNAVAILABLE
    except admin_api.AdminUnavailable as exc:
        print(f"kumoclient: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    except SpoolError as exc:
        print(f"kumoclient: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except KumoClientError as exc:
        print(f"kumoclient: {exc}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return admin.run(args)
    if args.command == "inject":
        return admin.inject(args, sys.stdin.buffer, sys.stdout)
    if args.command == "send":
        return send.send(args, sys.stdin.buffer, sys.stdout)
    if args.command == "queue":
        return admin.queue(args, sys.stdout)
    if args.command == "admin":
        return admin_command(args, sys.stdout)
    if args.command == "policy" and args.policy_command == "check":
        return policy_check(args.file, sys.stdout)
    if args.command == "policy" and args.policy_command == "rewrite":
        return policy_rewrite(args, sys.stdout)
    raise UsageError(f"unknown command {args.command}")


_ADMIN_CALLS = {
    "suspend": ("POST", "/api/admin/suspend/v1"),
    "resume": ("DELETE", "/api/admin/suspend/v1"),
    "suspensions": ("GET", "/api/admin/suspend/v1"),
    "bounce": ("POST", "/api/admin/bounce/v1"),
    "retry": ("POST", "/api/admin/retry/v1"),
    "queues": ("GET", "/api/admin/queues/v1"),
}


def admin_command(args: argparse.Namespace, out: TextIO) -> int:
    """`kumoclient admin ACTION`: one call to the daemon's admin API; its answer as JSON."""
    if args.action in ("suspend", "bounce") and not args.reason:
        raise UsageError(f"admin {args.action}: --reason is required")
    if (args.user is None) != (args.password is None):
        raise UsageError("admin: --user and --password go together")
    body: dict[str, object] = {
        part: getattr(args, part)
        for part in ("domain", "tenant", "campaign")
        if getattr(args, part) is not None
    }
    if args.action in ("suspend", "bounce"):
        body["reason"] = args.reason
    if args.action == "suspend" and args.duration:
        body["duration"] = args.duration
    if args.action == "bounce" and args.everything:
        body["everything"] = True
    if args.action == "resume" and args.id:
        body = {"id": args.id}
    method, path = _ADMIN_CALLS[args.action]
    auth = (args.user, args.password) if args.user is not None else None
    answer = admin_api.call(args.url, method, path, None if method == "GET" else body, auth=auth)
    out.write(json.dumps(answer, indent=2, sort_keys=True) + "\n")
    return EX_OK


def _policy_error_line(exc: PolicyError) -> str:
    text = str(exc)
    if exc.location and not text.startswith(exc.location):
        return f"{exc.location}: {text}"
    return text


# --- policy check --------------------------------------------------------------------------


def policy_check(path: Path, out: TextIO) -> int:
    """Load the policy and run `init`; list the handlers. Errors raise PolicyError (78)."""
    runtime = PolicyRuntime(path)
    init = runtime.run_init()
    out.write(f"{path}: OK\n")
    events = runtime.registered_events()
    if not events:
        out.write("no event handlers registered\n")
    for name in sorted(events):
        for where in events[name]:
            out.write(f"  {name:<38} {where}\n")
    for listener in init.esmtp_listeners:
        out.write(f"  esmtp listener {listener.listen}\n")
    for http in init.http_listeners:
        out.write(f"  http listener {http.listen}\n")
    if init.local_logs is not None:
        out.write(f"  log records in {init.local_logs.log_dir}\n")
    return EX_OK


# --- policy rewrite ------------------------------------------------------------------------


def policy_rewrite(args: argparse.Namespace, out: TextIO) -> int:
    """`policy rewrite FILE --response TEXT` or `--replay LOGFILE...`."""
    runtime = PolicyRuntime(args.file)
    line_break = LITERAL_CRLF if args.line_break == "literal" else SPACE
    if args.replay:
        return _replay(runtime, args.replay, line_break, out)
    reply = parse_one_line(args.response)
    queue = QueueName(args.domain.lower(), args.tenant, args.campaign, args.routing_domain)
    outcome = runtime.rewrite_delivery_status(reply, queue, line_break)
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


def _replay(runtime: PolicyRuntime, files: list[Path], line_break: str, out: TextIO) -> int:
    seen = changed = 0
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ReplyParseError(f"cannot read {path}: {exc.strerror}") from exc
        for number, line in enumerate(lines, 1):
            replayed = _replay_line(runtime, line, f"{path}:{number}", line_break)
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


def _replay_line(
    runtime: PolicyRuntime, line: str, where: str, line_break: str
) -> _Replayed | None:
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ReplyParseError(f"{where}: not a JSON log record: {exc.msg}") from exc
    if not isinstance(record, dict) or record.get("type") not in ("TransientFailure", "Bounce"):
        return None
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
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplyParseError(f"{where}: log record lacks {exc}") from exc
    outcome = runtime.rewrite_delivery_status(reply, queue, line_break)
    recipient = record.get("recipient")
    return _Replayed(str(record.get("id", "?")), str(recipient), record["type"], outcome)
