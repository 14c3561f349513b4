"""KumoMTA's tuning calls without a counterpart here: each reference page's example runs
(accepted), and a wrong argument is an error naming the policy's line, as KumoMTA's typed
arguments refuse it. The memory getters answer what was set."""

from __future__ import annotations

import pytest

from kumoclient.errors import PolicyError
from kumoclient.policy.modules import tuning
from tests.policy.conftest import LoadPolicy


@pytest.fixture(autouse=True)
def _own_memory_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """kumo.set_memory_* keep their values per process: each test starts with none."""
    monkeypatch.setattr(tuning, "_MEMORY", {})


# the examples of the reference pages (docs/reference/kumo/<name>.md), in pre_init
EXAMPLES = [
    "kumo.set_httpinject_threads(12)",
    "kumo.set_smtpsrv_threads(12)",
    "kumo.set_readyq_threads(12)",
    "kumo.set_ready_qmaint_threads(12)",
    "kumo.set_qmaint_threads(12)",
    "kumo.set_spoolin_threads(12)",
    "kumo.set_logging_threads(12)",
    "kumo.set_max_lua_context_age(300)",
    "kumo.set_max_lua_context_use_count(1024)",
    "kumo.set_max_spare_lua_contexts(8192)",
    "kumo.set_lua_gc_on_put(1)",
    "kumo.set_lruttl_cache_capacity('dns_resolver_mx', 128000)",
    "kumo.dkim.set_signing_threads(math.ceil(kumo.available_parallelism() / 2))",
    "kumo.aaa.set_acl_cache_ttl '5 minutes'",
    "kumo.aaa.set_check_cache_ttl '5 minutes'",
    "kumo.spawn_thread_pool { name = 'my-pool', num_threads = 4 }",
    "kumo.enable_memory_callstack_tracking(false)",
    "kumo.set_timeq_spawn_reinsertion(true)",
    "kumo.suspend_delivery_when_spool_unhealthy(true)",
    "kumo.set_memory_hard_limit(2 * 1024 * 1024 * 1024)",
    "kumo.set_memory_soft_limit(1024 * 1024 * 1024)",
    "kumo.set_memory_low_thresh(800 * 1024 * 1024)",
]


@pytest.mark.parametrize("call", EXAMPLES)
async def test_the_reference_example_is_accepted_in_pre_init(
    load_policy: LoadPolicy, call: str
) -> None:
    runtime = load_policy(
        f"""
        local kumo = require 'kumo'
        kumo.on('pre_init', function()
          {call}
        end)
        """
    )
    init = await runtime.start()
    assert init.spools == ()  # configured nothing


BAD = [
    ("kumo.set_smtpsrv_threads('many')", "must be an integer"),
    ("kumo.set_readyq_threads(-1)", "must be at least 0"),
    ("kumo.set_max_lua_context_age(2.5)", "must be an integer"),
    ("kumo.set_lua_gc_on_put(256)", "out of range"),
    ("kumo.set_lruttl_cache_capacity('my_cache', 10)", "not a pre-defined lruttl cache name"),
    ("kumo.set_lruttl_cache_capacity('dns_resolver_mx', 'big')", "CAPACITY must be an integer"),
    ("kumo.spawn_thread_pool { name = 'x' }", "expected a table {name=..., num_threads=N}"),
    ("kumo.enable_memory_callstack_tracking(1)", "expected true or false"),
    ("kumo.suspend_delivery_when_spool_unhealthy('yes')", "expected true or false"),
    ("kumo.aaa.set_acl_cache_ttl 'soon'", "set_acl_cache_ttl"),
    ("kumo.set_memory_soft_limit('1GB')", "must be an integer"),
]


@pytest.mark.parametrize(("call", "message"), BAD)
async def test_a_wrong_argument_is_an_error_at_the_policy_line(
    load_policy: LoadPolicy, call: str, message: str
) -> None:
    runtime = load_policy(
        f"""
        local kumo = require 'kumo'
        kumo.on('pre_init', function()
          {call}
        end)
        """
    )
    with pytest.raises(PolicyError, match=r"policy\.lua:4: ") as info:
        await runtime.start()
    assert message in str(info.value)


async def test_the_memory_getters_answer_what_pre_init_set(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local kumo = require 'kumo'
        kumo.on('pre_init', function()
          kumo.set_memory_hard_limit(2 * 1024 * 1024 * 1024)
          kumo.set_memory_soft_limit(1024 * 1024 * 1024)
          kumo.set_memory_low_thresh(800 * 1024 * 1024)
        end)
        kumo.on('init', function()
          LIMITS = { kumo.get_memory_hard_limit(), kumo.get_memory_soft_limit(),
                     kumo.get_memory_low_thresh() }
        end)
        """
    )
    await runtime.start()
    limits = runtime.vm.lua.globals().LIMITS
    assert list(limits.values()) == [2 * 1024**3, 1024**3, 800 * 1024**2]


def test_without_settings_the_limits_follow_the_machine() -> None:
    """KumoMTA's defaults: the hard limit is the RAM (or the cgroup's limit), the soft limit
    75% of it, the low threshold 80% of the soft limit."""
    hard, soft, low = tuning.memory_limits()
    assert hard is not None
    assert hard > 0
    assert soft == hard * 3 // 4
    assert low == soft * 4 // 5
