"""Every error a policy sees names the policy's own file:line, never kumoclient's internals:
a sweep of wrong calls of every function the runtime defines, in a handler and at load."""

from __future__ import annotations

import pytest

from kumoclient.errors import PolicyLoadError
from tests.policy.conftest import LoadPolicy

MISUSES = [
    "kumo.on(1, function() end)",
    "kumo.on('x', 2)",
    "kumo.memoize(1)",
    "kumo.memoize(function() end, 5)",
    "kumo.memoize(function() end, {name = 'n', ttl = 'never', capacity = 1})",
    "kumo.memoize(function() end, {name = 'n', ttl = 1, capacity = 1, populate_timeout = 'x'})",
    "kumo.memoize(function() end, {name = 'n', ttl = 1, capacity = 1})(function() end)",
    "kumo.regex_set_map.new(5)",
    "kumo.regex_set_map.new({['('] = 1})",
    "local m = kumo.regex_set_map.new({}); m.x = 1",
    "kumo.json_parse(5)",
    "kumo.json_load(nil)",
    "kumo.json_load('/no/such/file.json')",
    "kumo.json_encode(function() end)",
    "kumo.make_queue_config(5)",
    "kumo.make_queue_config({retry_interval = {}})",
    "local q = kumo.make_queue_config({}); q.x = 1",
    "kumo.start_esmtp_listener{listen = 5}",
    "kumo.define_spool{name = 'data', path = '/tmp', kind = 'Tape'}",
    "kumo.set_smtpsrv_threads('many')",
    "kumo.set_diagnostic_log_filter('kumod=loud')",
    "kumo.set_httpinject_recipient_rate_limit('fast')",
    "kumo.configure_accounting_db_path(5)",
    "kumo.reject('x', 'y')",
    "kumo.spawn_task(5)",
    "kumo.spawn_task{event_name = 5}",
    "kumo.invoke_get_queue_config(5)",
    "kumo.invoke_get_egress_path_config('a')",
    "kumo.invoke_get_egress_source('nothing-defines-it')",
    "kumo.traceback('x')",
    "kumo.sleep('x')",
    "kumo.time.sleep(-1)",
    "kumo.set_config_monitor_globs(5)",
    "require(5)",
    "require('no.such.module')",
    "dofile(nil)",
    "dofile('/no/such/file.lua')",
    "io.popen(5)",
    "io.popen('true', 'w')",
    "xpcall(function() end, 5)",
    "local t = nil; return t.field",
    "return #nil",
    "error('plain')",
    "error({})",
]


@pytest.mark.parametrize("code", MISUSES)
async def test_a_wrong_call_in_a_handler_names_the_policy_line(
    load_policy: LoadPolicy, code: str
) -> None:
    runtime = load_policy(f"kumo.on('e', function()\n  {code}\nend)\n")
    fired = await runtime.fire("e")
    assert fired.status == "error"
    text = f"{fired.value}\n{fired.detail}"
    assert "kumoclient-" not in text
    if code.startswith("error({"):  # a table as the error: it has no place of its own
        return
    assert str(fired.value).startswith(f"{runtime.path}:2: "), fired.value


@pytest.mark.parametrize("code", MISUSES)
def test_a_wrong_call_at_load_names_the_policy_line(load_policy: LoadPolicy, code: str) -> None:
    if code.startswith("kumo.invoke") or code.startswith("return") or "local t" in code:
        code = f"(function() {code} end)()"
    with pytest.raises(PolicyLoadError) as info:
        load_policy(f"\n{code}\n")
    text = f"{info.value}\n{info.value.traceback}"
    assert "kumoclient-" not in text
    if code.startswith("error({"):
        return
    assert str(info.value).startswith(f"{info.value.location}: ")
    assert str(info.value.location).endswith("policy.lua:2")
