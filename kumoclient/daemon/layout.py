"""Where the daemon keeps things, and its directories made ready before anything opens them.

Command-line options override what the policy's `init` configured, which overrides defaults.
The accounting database (`kumo.configure_accounting_db_path`) is by default `accounting.db`
beside the spool directory (KumoMTA's /var/spool/kumomta/accounting.db for a spool in
/var/spool/kumomta/data), or in `--data-dir`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from kumoclient.configs import EsmtpListenerConfig, HttpListenerConfig, InitConfig
from kumoclient.engine.engine import DEFAULT_DATA_DIR
from kumoclient.errors import CannotCreate
from kumoclient.spool.space import SpaceLimits

ACCOUNTING_DB = "accounting.db"


@dataclass(frozen=True, slots=True)
class DaemonOptions:
    """What the command line gave (`kumoclient run`); None means "as the policy says, else the
    default"."""

    policy: Path | None = None
    data_dir: Path | None = None
    listen: str | None = None
    http: str | None = None
    workers: int = 0  # reception worker processes (kumoclient/daemon/workers.py)
    validate: bool = False  # check the policy (pre_init, init, validate_config) and exit


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the daemon keeps things, after options have overridden the policy."""

    spool_dir: Path
    log_dir: Path
    max_segment_duration: float
    listeners: tuple[EsmtpListenerConfig, ...]
    http_listeners: tuple[HttpListenerConfig, ...] = ()
    accounting_db: Path | None = None
    min_free: SpaceLimits | None = None  # the spools' least free space (None: no least)


def layout(options: DaemonOptions, init: InitConfig) -> Layout:
    """Options override what `init` configured; the rest falls back to the defaults."""
    spools = {s.name: Path(s.path) for s in init.spools}
    if options.data_dir is not None:
        spool_dir, log_dir = options.data_dir / "spool", options.data_dir / "logs"
        accounting = options.data_dir / ACCOUNTING_DB
    else:
        spool_dir = spools.get("data", DEFAULT_DATA_DIR / "spool")
        log_dir = Path(init.local_logs.log_dir) if init.local_logs else DEFAULT_DATA_DIR / "logs"
        accounting = Path(init.accounting_db_path or spool_dir.parent / ACCOUNTING_DB)
    listeners = init.esmtp_listeners or (EsmtpListenerConfig(),)
    if options.listen is not None:
        listeners = (replace(listeners[0], listen=options.listen),)
    http_listeners = init.http_listeners
    if options.http is not None:  # --http moves the first HTTP listener, or adds one
        first = http_listeners[0] if http_listeners else HttpListenerConfig()
        http_listeners = (replace(first, listen=options.http), *http_listeners[1:])
    segment = init.local_logs.max_segment_duration if init.local_logs else 3600.0
    return Layout(
        spool_dir, log_dir, segment, listeners, http_listeners, accounting, _min_free(init)
    )


def _min_free(init: InitConfig) -> SpaceLimits | None:
    """The least free space of the spools the policy defined, all kept on the one spool's
    disk (None when it defined none)."""
    limits = [SpaceLimits(s.min_free_space, s.min_free_inodes) for s in init.spools]
    if not limits:
        return None
    combined = limits[0]
    for more in limits[1:]:
        combined = combined.stricter(more)
    return combined


def ready_directory(path: Path) -> Path:
    """`path`, created with its parents when missing; CannotCreate (with the reason) when it
    cannot be, or is there but is not a directory this process may write to."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file, or a symbolic link to nothing, has the name
        raise CannotCreate(str(path), "it exists and is not a directory") from None
    except NotADirectoryError:
        raise CannotCreate(str(path), "a part of the path is a file, not a directory") from None
    except OSError as exc:
        raise CannotCreate(str(path), exc.strerror or str(exc)) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise CannotCreate(str(path), "the directory is not writable (permission or read-only)")
    return path
