"""The diagnostic log filter: which operational log lines are written, by the module that
writes them, in the directive language of KumoMTA's `kumo.set_diagnostic_log_filter` (the
`tracing` crate's EnvFilter).

A filter is directives joined by commas: `LEVEL` (the level of every module no other directive
names), `TARGET=LEVEL`, or `TARGET` alone (every level). Levels: `trace` (as `debug` here),
`debug`, `info`, `warn`, `error`, `off`, or 5..0. A target is a module path (`kumoclient.engine`
or `kumoclient::engine`, and everything below it), one of KumoMTA's names in TARGETS, or `lua`
(the policy's `kumo.log_*` lines). The most specific directive matching a module decides; a
module no directive matches writes nothing, as in KumoMTA (`kumod=debug` hides `lua` lines).
Span and field filters (`target[span{field=value}]`) are refused: these logs have no spans.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import structlog

from kumoclient.errors import ConfigError

OFF = logging.CRITICAL + 10
LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "off": OFF,
    "5": logging.DEBUG,
    "4": logging.DEBUG,
    "3": logging.INFO,
    "2": logging.WARNING,
    "1": logging.ERROR,
    "0": OFF,
}
# KumoMTA's crate names (its default filter names most of them) → the kumoclient modules
# doing that work
TARGETS: dict[str, tuple[str, ...]] = {
    "kumod": ("kumoclient",),
    "kumo_server_common": ("kumoclient.daemon", "kumoclient.http"),
    "kumo_server_lifecycle": ("kumoclient.daemon",),
    "kumo_server_runtime": ("kumoclient.daemon",),
    "config": ("kumoclient.policy",),
    "mod_memoize": ("kumoclient.policy.memoize", "kumoclient.policy.memo_host"),
    "spool": ("kumoclient.spool",),
    "dns_resolver": ("kumoclient.mx",),
    "throttle": ("kumoclient.throttles",),
    "lua": ("lua",),
}
_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}
_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:(?:::|\.)[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Parsed directives: `rules` are (module prefix, level), most specific first; `default`
    is the level of the modules no rule matches (OFF: none)."""

    text: str
    default: int
    rules: tuple[tuple[str, int], ...] = ()

    @property
    def minimum(self) -> int:
        """The lowest level any module writes (what the loggers need not even format below);
        CRITICAL when none writes anything."""
        return min([self.default, *(level for _, level in self.rules), logging.CRITICAL])

    def level_for(self, module: str) -> int:
        """The lowest level `module` writes."""
        for prefix, level in self.rules:
            if module == prefix or module.startswith(prefix + "."):
                return level
        return self.default


def _level(text: str, directive: str) -> int:
    level = LEVELS.get(text.strip().lower())
    if level is None:
        raise ConfigError(
            f"kumo.set_diagnostic_log_filter: {directive!r}: unknown level {text.strip()!r} "
            "(trace, debug, info, warn, error, off)"
        )
    return level


def parse_filter(text: str) -> LogFilter:
    """`text` as a LogFilter; ConfigError naming the bad directive."""
    default: int | None = None
    rules: list[tuple[str, int, int]] = []  # prefix, level, order
    for order, raw in enumerate(text.split(",")):
        directive = raw.strip()
        if not directive:
            continue
        if "[" in directive or "{" in directive:
            raise ConfigError(
                f"kumo.set_diagnostic_log_filter: {directive!r}: span and field filters are "
                "not supported (kumoclient's log has no spans); use target=level"
            )
        target, equals, level_text = directive.partition("=")
        if not equals and target.strip().lower() in LEVELS:
            default = _level(target, directive)
            continue
        level = _level(level_text, directive) if equals else logging.DEBUG
        name = target.strip()
        if not _TARGET.fullmatch(name):
            raise ConfigError(
                f"kumo.set_diagnostic_log_filter: {directive!r}: {name!r} is not a target "
                "(a module path such as kumod or kumoclient.engine)"
            )
        for prefix in TARGETS.get(name, (name.replace("::", "."),)):
            rules.append((prefix, level, order))
    # the longest prefix first; of two alike, the later directive
    rules.sort(key=lambda rule: (-len(rule[0]), -rule[2]))
    chosen = tuple((prefix, level) for prefix, level, _ in rules)
    return LogFilter(text, OFF if default is None else default, chosen)


def everything_at(level: str) -> LogFilter:
    """The filter of the command line's `--log-level`: every module at `level`."""
    return LogFilter(level, LEVELS.get(level, logging.INFO))


class _State:
    """The filter in force and each module's level under it (per process)."""

    def __init__(self) -> None:
        self.active = everything_at("info")
        self.levels: dict[str, int] = {}

    def install(self, active: LogFilter) -> None:
        self.active = active
        self.levels = {}


STATE = _State()


class NamedWriteLogger(structlog.WriteLogger):
    """structlog's WriteLogger knowing the module it logs for (what the filter looks at)."""

    def __init__(self, file: Any, name: str) -> None:
        super().__init__(file)
        self.name = name


class NamedWriteLoggerFactory:
    """Makes NamedWriteLoggers: `get_logger(name)` hands the module name here."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def __call__(self, *args: Any) -> NamedWriteLogger:
        return NamedWriteLogger(self._file, str(args[0]) if args else "")


def drop_filtered(logger: Any, method: str, event: MutableMapping[str, Any]) -> Any:
    """A structlog processor: drop the line when its module's level is above the line's."""
    state = STATE
    name = getattr(logger, "name", "")
    level = state.levels.get(name)
    if level is None:
        level = state.levels[name] = state.active.level_for(name)
    if _METHOD_LEVELS.get(method, logging.INFO) < level:
        raise structlog.DropEvent
    return event
