"""Command line: argparse, each command's options, one line per error, the exit codes.

The work is in commands/.

Exit codes follow sysexits (commands/exits.py has the table). Errors are one line on stderr,
never a traceback (`--log-level debug` adds the traceback of an internal error). The global
options (`--log-format`, `--log-level`) may come before or after the sub-command.
"""

from __future__ import annotations

import argparse
import errno
import io
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import BinaryIO, NoReturn, TextIO, TypeAlias

from kumoclient import logs
from kumoclient.commands.admin import ACTIONS, DEFAULT_URL, AdminOptions, admin
from kumoclient.commands.exits import (
    EX_BROKEN_PIPE,
    EX_INTERRUPTED,
    EX_OK,
    EX_SOFTWARE,
    EX_USAGE,
    error_line,
    exit_code,
)
from kumoclient.commands.inject import InjectOptions, inject
from kumoclient.commands.policy_check import PolicyCheckOptions, policy_check
from kumoclient.commands.policy_rewrite import PolicyRewriteOptions, policy_rewrite
from kumoclient.commands.queue import QueueOptions, queue
from kumoclient.commands.run import run
from kumoclient.commands.send import SendOptions, send
from kumoclient.daemon.layout import DaemonOptions
from kumoclient.engine.engine import DEFAULT_DATA_DIR
from kumoclient.errors import KumoClientError, UsageError

Command = Callable[[], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """`--log-format` and `--log-level`: on the top parser with their defaults, and on every
    sub-command's parser without (so that a value given after the sub-command wins, and one
    given before it is not overwritten)."""
    parser.add_argument(
        "--log-format",
        choices=("json", "console"),
        default="json" if top else argparse.SUPPRESS,
        help="operational log format on stderr (default: json)",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info" if top else argparse.SUPPRESS,
        help="least level of the operational logs (default: info)",
    )


Subcommands: TypeAlias = "argparse._SubParsersAction[_Parser]"  # generic only when type-checked


def _subcommand(commands: Subcommands, name: str, text: str) -> _Parser:
    parser = commands.add_parser(name, help=text)
    _add_global_options(parser, top=False)
    return parser


def _version() -> str:
    try:
        return metadata.version("kumoclient")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The whole command-line grammar."""
    parser = _Parser(
        prog="kumoclient",
        description="asyncio SMTP delivery daemon with KumoMTA-compatible Lua policy",
    )
    _add_global_options(parser, top=True)
    parser.add_argument("--version", action="version", version=f"kumoclient {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_run(commands)
    _add_inject(commands)
    _add_send(commands)
    _add_queue(commands)
    _add_admin(commands)
    _add_policy(commands)
    return parser


def _add_run(commands: Subcommands) -> None:
    run_ = _subcommand(commands, "run", "run the daemon")
    run_.add_argument("--policy", type=Path, help="Lua policy file (default: the built-in one)")
    run_.add_argument(
        "--data-dir",
        type=Path,
        help="spool in DIR/spool, log records in DIR/logs (default: ./kumoclient-data)",
    )
    run_.add_argument(
        "--listen", metavar="HOST:PORT", help="SMTP listener address (port 0: any free port)"
    )
    run_.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="HTTP listener address (inject API, metrics); replaces the listen address of "
        "the policy's first kumo.start_http_listener, or adds a listener",
    )
    run_.add_argument(
        "--workers",
        type=_worker_count,
        default=0,
        metavar="N",
        help="reception worker processes taking SMTP mail in beside the main process, which "
        "then only delivers (default: 0, everything in one process; 'auto': one per CPU "
        "beyond the first)",
    )
    run_.add_argument(
        "--validate",
        action="store_true",
        help="check the policy as KumoMTA's --validate does (pre_init, init, validate_config; "
        "nothing is started) and exit: 0 when valid, 78 when not",
    )


def _add_inject(commands: Subcommands) -> None:
    inject_ = _subcommand(commands, "inject", "put a message into the spool's incoming/ folder")
    inject_.add_argument("--from", dest="sender", required=True, metavar="ADDR")
    inject_.add_argument("--to", dest="recipients", required=True, action="append", metavar="ADDR")
    inject_.add_argument("--tenant")
    inject_.add_argument("--campaign")
    inject_.add_argument("--routing-domain")
    inject_.add_argument("--meta", action="append", default=[], metavar="K=V")
    inject_.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    inject_.add_argument("file", metavar="FILE|-", help="the message (RFC 5322), - for stdin")


def _add_send(commands: Subcommands) -> None:
    send_ = _subcommand(
        commands, "send", "one delivery attempt in the foreground, printing the SMTP conversation"
    )
    send_.add_argument("--from", dest="sender", required=True, metavar="ADDR")
    send_.add_argument("--to", dest="recipient", required=True, metavar="ADDR")
    send_.add_argument("--policy", type=Path, help="policy file (default: the built-in one)")
    send_.add_argument(
        "--mx", metavar="HOST:PORT", help="deliver to this host instead of the queue's mx_list"
    )
    send_.add_argument("file", metavar="FILE|-", help="the message (RFC 5322), - for stdin")


def _add_queue(commands: Subcommands) -> None:
    queue_ = _subcommand(commands, "queue", "inspect the spool (also while the daemon runs)")
    queue_.add_argument("view", choices=("summary", "list"))
    queue_.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)


def _add_admin(commands: Subcommands) -> None:
    control = _subcommand(
        commands, "admin", "administer a running daemon's queues over its HTTP listener"
    )
    control.add_argument(
        "action",
        choices=tuple(ACTIONS),
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
    control.add_argument("--url", default=DEFAULT_URL, help="the daemon's HTTP listener")
    control.add_argument("--user", help="HTTP Basic auth user (clients outside trusted_hosts)")
    control.add_argument("--password", help="HTTP Basic auth password")


def _add_policy(commands: Subcommands) -> None:
    policy = _subcommand(commands, "policy", "check a policy file or try its rewrite hook")
    policy_commands = policy.add_subparsers(
        dest="policy_command", required=True, parser_class=_Parser
    )
    check = _subcommand(
        policy_commands,
        "check",
        "load a policy, run pre_init, init, validate_config and its configuration events with "
        "sample arguments, list its event handlers",
    )
    check.add_argument("file", type=Path)
    rewrite = _subcommand(
        policy_commands, "rewrite", "run smtp_client_rewrite_delivery_status on a response"
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


def command(args: argparse.Namespace) -> Command:
    """The parsed command line as a call of one command with its options."""
    out, stdin = _streams()
    if args.command == "run":
        options = DaemonOptions(
            args.policy, args.data_dir, args.listen, args.http, args.workers, args.validate
        )
        return lambda: run(options)
    if args.command == "inject":
        inject_options = InjectOptions(
            sender=args.sender,
            recipients=tuple(args.recipients),
            file=args.file,
            data_dir=args.data_dir,
            tenant=args.tenant,
            campaign=args.campaign,
            routing_domain=args.routing_domain,
            meta=tuple(args.meta),
        )
        return lambda: inject(inject_options, stdin, out)
    if args.command == "send":
        send_options = SendOptions(args.sender, args.recipient, args.file, args.policy, args.mx)
        return lambda: send(send_options, stdin, out)
    if args.command == "queue":
        queue_options = QueueOptions(args.view, args.data_dir)
        return lambda: queue(queue_options, out)
    if args.command == "admin":
        return lambda: admin(_admin_options(args), out)
    if args.policy_command == "check":
        check_options = PolicyCheckOptions(args.file)
        return lambda: policy_check(check_options, out)
    return lambda: policy_rewrite(_rewrite_options(args), out)


def _admin_options(args: argparse.Namespace) -> AdminOptions:
    return AdminOptions(
        action=args.action,
        domain=args.domain,
        tenant=args.tenant,
        campaign=args.campaign,
        reason=args.reason,
        duration=args.duration,
        id=args.id,
        everything=args.everything,
        url=args.url,
        user=args.user,
        password=args.password,
    )


def _rewrite_options(args: argparse.Namespace) -> PolicyRewriteOptions:
    return PolicyRewriteOptions(
        file=args.file,
        response=args.response,
        replay=tuple(args.replay or ()),
        domain=args.domain,
        tenant=args.tenant,
        campaign=args.campaign,
        routing_domain=args.routing_domain,
        line_break=args.line_break,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kumoclient` console script."""
    try:
        code = _main(argv)
        if sys.stdout is not None:
            sys.stdout.flush()  # a reader that went away is found here, not at the exit
    except BrokenPipeError:  # `kumoclient queue list | head`: not an error to report
        _silence_stdout()
        return EX_BROKEN_PIPE
    return code


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EX_USAGE
    except SystemExit as exc:  # --help, --version: printed
        return exc.code if isinstance(exc.code, int) else EX_OK
    logs.configure_logging(args.log_format, args.log_level)
    try:
        return command(args)()
    except KumoClientError as exc:
        print(error_line(exc), file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except BrokenPipeError:
        raise
    except Exception as exc:  # a bug: still one line and a code, the traceback on request
        if args.log_level == "debug":
            traceback.print_exc()
        print(f"kumoclient: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EX_SOFTWARE


class _ClosedStdin(io.BytesIO):
    """Standard input of a process started with it closed (`kumoclient inject - <&-`)."""

    def read(self, size: int | None = -1) -> bytes:
        raise OSError(errno.EBADF, "standard input is closed")


def _streams() -> tuple[TextIO, BinaryIO]:
    """stdout and stdin, also when the process was started with them closed (Python then
    has None): output goes nowhere, input fails as a closed file does."""
    out = sys.stdout if sys.stdout is not None else open(os.devnull, "w")  # noqa: SIM115
    stdin = sys.stdin.buffer if sys.stdin is not None else _ClosedStdin()
    return out, stdin


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises nothing more."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
