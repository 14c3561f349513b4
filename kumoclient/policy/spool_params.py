"""The values of `kumo.define_spool`'s `min_free_space`, `min_free_inodes` and `rocks_params`,
checked as KumoMTA reads them (converters of policy.config; a complaint is config_values.Bad).

`rocks_params` tunes RocksDB, which kumoclient does not use: every documented key is checked
for its type and kept, and has no effect (docs/policy.md says why)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kumoclient.configs import MinFree
from kumoclient.errors import ConfigError
from kumoclient.policy.config_values import Bad, boolean, duration, integer, one_of


def min_free(value: Any) -> MinFree:
    """`'10%'` (of the filesystem), or an amount: a number or a string of digits."""
    if isinstance(value, str):
        if value.endswith("%"):
            digits = value[:-1]
            if not digits.isdigit() or int(digits) > 100:
                raise Bad(f"invalid percentage {value!r}: expected '0%' to '100%'")
            return MinFree(percent=int(digits))
        if not value.isdigit():
            raise Bad(f"expected a percentage such as '10%' or an amount, got {value!r}")
        return MinFree(amount=int(value))
    amount: int = integer(0)(value)
    return MinFree(amount=amount)


_COMPRESSION = one_of("None", "Snappy", "Zlib", "Bz2", "Lz4", "Lz4hc", "Zstd")
_LOG_LEVEL = one_of("Debug", "Info", "Warn", "Error", "Fatal", "Header")
_ROCKS_KEYS: dict[str, Callable[[Any], Any]] = {
    **dict.fromkeys(
        (
            "increase_parallelism",
            "optimize_level_style_compaction",
            "optimize_universal_style_compaction",
            "compaction_readahead_size",
            "max_open_files",
            "write_buffer_size",
            "level0_stop_writes_trigger",
            "memtable_huge_page_size",
            "limit_concurrent_stores",
            "limit_concurrent_loads",
            "limit_concurrent_removes",
        ),
        integer(0),
    ),
    **dict.fromkeys(
        ("paranoid_checks", "level_compaction_dynamic_level_bytes", "allow_error_unlatch"),
        boolean,
    ),
    **dict.fromkeys(
        (
            "log_file_time_to_roll",
            "obsolete_files_period",
            "store_deadline",
            "error_latch_duration",
            "error_unlatch_duration",
        ),
        duration,
    ),
    "compression_type": _COMPRESSION,
    "log_level": _LOG_LEVEL,
}


def rocks_params(value: Any) -> tuple[tuple[str, object], ...]:
    """A table of RocksDB tuning keys, each checked; kept sorted by key."""
    if value == []:
        value = {}
    if not isinstance(value, dict):
        raise Bad("expected a table of RocksDB parameters")
    kept: list[tuple[str, object]] = []
    for key in sorted(value, key=str):
        convert = _ROCKS_KEYS.get(key)
        if convert is None:
            known = ", ".join(sorted(_ROCKS_KEYS))
            raise Bad(f"unknown key {key!r} (known keys: {known})")
        try:
            kept.append((key, convert(value[key])))
        except (Bad, ConfigError) as exc:  # (a bad duration is a DurationError)
            raise Bad(f"{key} = {value[key]!r}: {exc}") from exc
    if {k for k, _ in kept} >= {
        "optimize_level_style_compaction",
        "optimize_universal_style_compaction",
    }:
        raise Bad(
            "optimize_level_style_compaction and optimize_universal_style_compaction "
            "cannot both be set"
        )
    return tuple(kept)
