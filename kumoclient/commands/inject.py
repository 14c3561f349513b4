"""`kumoclient inject`: check a message and its envelope, then drop it into `incoming/`.

The drop into the spool's `incoming/` folder is atomic; the daemon picks it up (it works while
the daemon is stopped too).

Rules: the addresses follow core/address.py (`--from ''` is the null sender); `--meta` items
are `KEY=VALUE`; `--tenant`, `--campaign` and `--routing-domain` must keep the queue name
parseable (core/queue_name.py); every value must be UTF-8. A problem is BadInput (exit 65),
a missing message file NoInput (66), a data directory that cannot be written CannotCreate (73).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from kumoclient.commands.inputs import read_message, text_option
from kumoclient.core.address import check_mailbox, check_sender
from kumoclient.core.queue_name import check_part
from kumoclient.daemon.layout import ready_directory
from kumoclient.engine.engine import DEFAULT_DATA_DIR
from kumoclient.errors import BadInput, QueueNameError
from kumoclient.spool import Spool, Submission

EX_OK = 0


@dataclass(frozen=True, slots=True)
class InjectOptions:
    """`inject --from ADDR --to ADDR... [--tenant T] [--campaign C] [--routing-domain D]
    [--meta K=V...] [--data-dir DIR] FILE|-`."""

    sender: str
    recipients: tuple[str, ...]
    file: str  # a path, or "-" for stdin
    data_dir: Path = DEFAULT_DATA_DIR
    tenant: str | None = None
    campaign: str | None = None
    routing_domain: str | None = None
    meta: tuple[str, ...] = ()  # KEY=VALUE items


def inject(options: InjectOptions, stdin: BinaryIO, out: TextIO) -> int:
    """Validate, then drop into `incoming/`; print one id per recipient."""
    sender = check_sender(options.sender)
    recipients = tuple(check_mailbox(r) for r in options.recipients)
    meta = _meta(options)
    content = read_message(options.file, stdin)
    spool = Spool(ready_directory(options.data_dir / "spool"))
    ids = spool.drops.drop(
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


def _meta(options: InjectOptions) -> dict[str, str]:
    meta: dict[str, str] = {}
    for item in options.meta:
        key, equals, value = text_option("--meta", item).partition("=")
        if not equals or not key:
            raise BadInput(f"--meta {item!r}: expected KEY=VALUE")
        meta[key] = value
    for part, given in (
        ("tenant", options.tenant),
        ("campaign", options.campaign),
        ("routing_domain", options.routing_domain),
    ):
        if given is not None:
            meta[part] = _queue_part(part, given)
    return meta


def _queue_part(key: str, value: str) -> str:
    option = f"--{key.replace('_', '-')}"
    try:
        return check_part(key, text_option(option, value))
    except QueueNameError as exc:
        raise BadInput(f"{option} {value!r}: {exc}") from exc
