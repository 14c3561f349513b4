"""KumoMTA's tuning calls that have no counterpart in kumoclient: thread pools, the Lua context
pool, memory thresholds, cache sizes. Each checks its arguments as KumoMTA's does (a bad one is
an error naming the policy's file:line) and then has no effect; docs/kumo-reference.md gives
the reason for each. The memory getters answer what was set, else the limit found here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kumoclient.errors import ConfigError
from kumoclient.policy.api import kumo_function
from kumoclient.policy.config_values import Bad, duration
from kumoclient.policy.modules.args import integer, text

# the pre-defined lruttl caches of KumoMTA (docs/reference/lruttl-caches.json): only these
# take kumo.set_lruttl_cache_capacity, as there
LRUTTL_CACHES = frozenset(
    {
        "acl_check",
        "acl_definition",
        "dkim_key_cache",
        "dkim_signer_cache",
        "dns_resolver_ip",
        "dns_resolver_ipv4",
        "dns_resolver_ipv6",
        "dns_resolver_mx",
        "egress_source_pools",
        "egress_source_sources",
        "http_server_auth",
        "mod_filesystem_glob_cache",
        "mta_sts_policy",
        "rustls_client_config",
        "smtp_dispatcher_broken_tls",
        "smtp_dispatcher_client_certificate",
        "smtp_server_tls_config",
    }
)

# the `usize` setters: thread pools of KumoMTA's runtimes, the Lua context pool
_COUNT_SETTERS = (
    "set_httpinject_threads",
    "set_smtpsrv_threads",
    "set_readyq_threads",
    "set_ready_qmaint_threads",
    "set_qmaint_threads",
    "set_spoolin_threads",
    "set_logging_threads",
    "set_max_lua_context_age",
    "set_max_lua_context_use_count",
    "set_max_spare_lua_contexts",
    "dkim.set_signing_threads",
)

_MEMORY: dict[str, int] = {}  # what kumo.set_memory_* set in this process


def _count_setter(name: str) -> None:
    def setter(value: Any) -> None:
        integer(f"kumo.{name}", value, minimum=0)

    setter.__name__ = name.rpartition(".")[2]
    setter.__doc__ = f"`kumo.{name}(N)`: checked, no effect (see the module's text)."
    kumo_function(name)(setter)


for _name in _COUNT_SETTERS:
    _count_setter(_name)


def _boolean(what: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{what}: expected true or false, got {value!r}")
    return value


@kumo_function("set_lua_gc_on_put")
def set_lua_gc_on_put(value: Any) -> None:
    """`kumo.set_lua_gc_on_put(N)` (0-255): checked, no effect."""
    number = integer("kumo.set_lua_gc_on_put", value, minimum=0)
    if number > 255:
        raise ConfigError(f"kumo.set_lua_gc_on_put: {number} is out of range (0-255)")


@kumo_function("set_lruttl_cache_capacity")
def set_lruttl_cache_capacity(name: Any, capacity: Any) -> None:
    """`kumo.set_lruttl_cache_capacity(NAME, CAPACITY)`: a KumoMTA cache name; no effect."""
    cache = text("kumo.set_lruttl_cache_capacity", name, name="NAME")
    integer("kumo.set_lruttl_cache_capacity", capacity, name="CAPACITY", minimum=0)
    if cache not in LRUTTL_CACHES:
        raise ConfigError(
            f"kumo.set_lruttl_cache_capacity: could not set capacity for cache {cache} as "
            "that is not a pre-defined lruttl cache name"
        )


@kumo_function("spawn_thread_pool")
def spawn_thread_pool(params: Any) -> None:
    """`kumo.spawn_thread_pool{name=, num_threads=}`: checked, no thread pool is made."""
    what = "kumo.spawn_thread_pool"
    if not isinstance(params, dict) or set(params) != {"name", "num_threads"}:
        raise ConfigError(f"{what}: expected a table {{name=..., num_threads=N}}")
    text(what, params["name"], name="name")
    integer(what, params["num_threads"], name="num_threads", minimum=0)


@kumo_function("enable_memory_callstack_tracking")
def enable_memory_callstack_tracking(value: Any) -> None:
    """`kumo.enable_memory_callstack_tracking(BOOL)`: checked, no effect."""
    _boolean("kumo.enable_memory_callstack_tracking", value)


@kumo_function("set_timeq_spawn_reinsertion")
def set_timeq_spawn_reinsertion(value: Any) -> None:
    """`kumo.set_timeq_spawn_reinsertion(BOOL)`: deprecated in KumoMTA too; no effect."""
    _boolean("kumo.set_timeq_spawn_reinsertion", value)


@kumo_function("suspend_delivery_when_spool_unhealthy")
def suspend_delivery_when_spool_unhealthy(value: Any) -> None:
    """`kumo.suspend_delivery_when_spool_unhealthy(BOOL)`: checked, no effect (the local-disk
    spool has no load-shedding state)."""
    _boolean("kumo.suspend_delivery_when_spool_unhealthy", value)


def _cache_ttl(name: str) -> None:
    def setter(value: Any) -> None:
        try:
            duration(value)
        except (Bad, ConfigError) as exc:
            raise ConfigError(f"kumo.{name}: {exc}") from exc

    setter.__name__ = name.rpartition(".")[2]
    setter.__doc__ = f"`kumo.{name}(DURATION)`: checked, no effect (no ACL cache here)."
    kumo_function(name)(setter)


_cache_ttl("aaa.set_acl_cache_ttl")
_cache_ttl("aaa.set_check_cache_ttl")


# --- memory thresholds -----------------------------------------------------------------------


def _memory_setter(kind: str) -> None:
    def setter(value: Any) -> None:
        _MEMORY[kind] = integer(f"kumo.set_memory_{kind}", value, minimum=0)

    setter.__name__ = f"set_memory_{kind}"
    setter.__doc__ = f"`kumo.set_memory_{kind}(BYTES)`: kept for the getter; not enforced."
    kumo_function(f"set_memory_{kind}")(setter)


for _kind in ("hard_limit", "soft_limit", "low_thresh"):
    _memory_setter(_kind)


def _cgroup_limit() -> int | None:
    """The cgroup v2 memory limit of this process, when there is one."""
    try:
        text_value = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return None
    return int(text_value) if text_value.isdigit() else None


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def memory_limits() -> tuple[int | None, int | None, int | None]:
    """(hard, soft, low): what the policy set, else KumoMTA's defaults computed here (the
    cgroup limit or the RAM; 75% of it; 80% of the soft limit)."""
    hard = _MEMORY.get("hard_limit")
    if hard is None:
        hard = _cgroup_limit() or _physical_memory()
    soft = _MEMORY.get("soft_limit", hard * 3 // 4 if hard else None)
    low = _MEMORY.get("low_thresh", soft * 4 // 5 if soft else None)
    return hard, soft, low


@kumo_function("get_memory_hard_limit")
def get_memory_hard_limit() -> int | None:
    """`kumo.get_memory_hard_limit()`: bytes, or nil when none is known."""
    return memory_limits()[0]


@kumo_function("get_memory_soft_limit")
def get_memory_soft_limit() -> int | None:
    """`kumo.get_memory_soft_limit()`: bytes, or nil."""
    return memory_limits()[1]


@kumo_function("get_memory_low_thresh")
def get_memory_low_thresh() -> int | None:
    """`kumo.get_memory_low_thresh()`: bytes, or nil."""
    return memory_limits()[2]
