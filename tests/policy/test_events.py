"""kumo.on: the event table, single and multi handlers, errors naming file:line."""

from __future__ import annotations

import pytest

from kumoclient.errors import PolicyError, PolicyLoadError, PolicyReject
from kumoclient.policy.events import EVENTS, MULTI_HANDLER_EVENTS, Handlers
from kumoclient.records import QueueName
from tests.policy.conftest import LoadPolicy


def test_multi_handler_events_are_kumomtas_seven() -> None:
    assert {
        "pre_init",
        "validate_config",
        "get_queue_config",
        "throttle_insert_ready_queue",
        "requeue_message",
        "should_enqueue_log_record",
        "get_acl_definition",
    } == MULTI_HANDLER_EVENTS
    singles = {n for n, e in EVENTS.items() if e.handlers is Handlers.SINGLE}
    assert "init" in singles
    assert "smtp_server_message_received" in singles
    assert EVENTS["smtp_client_rewrite_delivery_status"].args == (
        "response",
        "domain",
        "tenant",
        "campaign",
        "routing_domain",
    )


async def test_any_event_name_is_accepted_and_fired(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('my.custom.event', function(a, b) return a .. b end)
        kumo.on('throttle_insert_ready_queue', function() end)
        """
    )
    fired = await runtime.fire("my.custom.event", "x", "y")
    assert (fired.status, fired.value) == ("ok", "xy")
    assert runtime.has_handler("throttle_insert_ready_queue")


def test_second_handler_for_single_event_names_the_first(load_policy: LoadPolicy) -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy(
            "kumo.on('smtp_client_rewrite_delivery_status', function() end)\n"
            "kumo.on('smtp_client_rewrite_delivery_status', function() end)\n"
        )
    message = str(info.value)
    assert (
        "policy.lua:2: smtp_client_rewrite_delivery_status event already has a handler" in message
    )
    assert "defined at" in message
    assert message.endswith("policy.lua:1")


@pytest.mark.parametrize("event", ["init", "smtp_server_message_received", "pre_init"])
def test_a_second_handler_is_an_error_for_every_single_handler_event(
    load_policy: LoadPolicy, event: str
) -> None:
    source = f"kumo.on('{event}', function() end)\nkumo.on('{event}', function() end)\n"
    if event == "pre_init":  # multi: both kept, in order
        runtime = load_policy(source)
        assert [w.rsplit(":", 1)[1] for w in runtime.registered_events()[event]] == ["1", "2"]
        return
    with pytest.raises(PolicyLoadError, match=f"policy.lua:2: {event} event already has"):
        load_policy(source)


async def test_kumo_on_inside_an_event_is_an_error(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('init', function()
          kumo.on('get_queue_config', function() end)
        end)
        """
    )
    with pytest.raises(
        PolicyError,
        match=r"policy\.lua:3: kumo\.on\('get_queue_config', \.\.\.\) "
        r"called from within the handler of 'init'",
    ):
        await runtime.run_init()


async def test_kumo_on_inside_main_is_allowed(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('main', function()
          kumo.on('later', function() return 'registered in main' end)
        end)
        """
    )
    assert (await runtime.fire("main")).status == "ok"
    assert (await runtime.fire("later")).value == "registered in main"


def test_handler_must_be_a_function(load_policy: LoadPolicy) -> None:
    with pytest.raises(PolicyLoadError, match="the handler must be a function, got number"):
        load_policy("kumo.on('init', 42)")


async def test_multi_handler_get_queue_config_stops_at_first_value(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        CALLS = {}
        kumo.on('get_queue_config', function(domain)
          table.insert(CALLS, 'first')
          if domain == 'a.com' then return kumo.make_queue_config{retry_interval='1m'} end
        end)
        kumo.on('get_queue_config', function(domain)
          table.insert(CALLS, 'second')
          return kumo.make_queue_config{retry_interval='2m'}
        end)
        """
    )
    assert (await runtime.get_queue_config(QueueName("a.com"))).retry_interval == 60
    assert (await runtime.get_queue_config(QueueName("b.com"))).retry_interval == 120
    assert list(runtime._lua.globals().CALLS.values()) == ["first", "first", "second"]
    assert runtime.registered_events()["get_queue_config"] == [
        f"{runtime.path}:3",
        f"{runtime.path}:7",
    ]


async def test_an_explicit_nil_stops_the_chain_and_nothing_passes_on(
    load_policy: LoadPolicy,
) -> None:
    """KumoMTA counts return values: `return nil` is one (the chain stops, the defaults
    apply); `return` with nothing, or falling off the end, passes to the next handler."""
    runtime = load_policy(
        """
        CALLS = {}
        kumo.on('get_queue_config', function(domain)
          table.insert(CALLS, 'first')
          if domain == 'nil.com' then return nil end
          if domain == 'bare.com' then return end
        end)
        kumo.on('get_queue_config', function(domain)
          table.insert(CALLS, 'second')
          return kumo.make_queue_config{retry_interval='2m'}
        end)
        """
    )
    assert (await runtime.get_queue_config(QueueName("nil.com"))).retry_interval == 20 * 60
    assert (await runtime.get_queue_config(QueueName("bare.com"))).retry_interval == 120
    assert (await runtime.get_queue_config(QueueName("other.com"))).retry_interval == 120
    calls = list(runtime._lua.globals().CALLS.values())
    assert calls == ["first", "first", "second", "first", "second"]


async def test_get_queue_config_receives_nil_for_absent_parts(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
          SEEN = table.concat({domain, tostring(tenant), tostring(campaign),
                               tostring(routing_domain)}, '|')
        end)
        """
    )
    await runtime.get_queue_config(QueueName("d.com"))
    assert runtime._lua.globals().SEEN == "d.com|nil|nil|nil"
    await runtime.get_queue_config(QueueName("d.com", "t", "c", "r.com"))
    assert runtime._lua.globals().SEEN == "d.com|t|c|r.com"


async def test_no_handler_gives_defaults(load_policy: LoadPolicy) -> None:
    runtime = load_policy("")
    assert (await runtime.get_queue_config(QueueName("d.com"))).max_age == 7 * 86400
    egress = await runtime.get_egress_path_config("d.com", "unspecified", "site")
    assert egress.connection_limit == 32


async def test_get_queue_config_returning_a_plain_table_is_an_error(
    load_policy: LoadPolicy,
) -> None:
    runtime = load_policy("kumo.on('get_queue_config', function() return {retry_interval=5} end)")
    with pytest.raises(PolicyError, match=r"returned a table; expected kumo\.make_queue_config"):
        await runtime.get_queue_config(QueueName("d.com"))


async def test_get_egress_path_config_arguments_and_result(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('get_egress_path_config', function(routing_domain, source, site)
          ARGS = routing_domain .. '|' .. source .. '|' .. site
          return kumo.make_egress_path{connection_limit = 3, enable_tls = 'Disabled'}
        end)
        """
    )
    config = await runtime.get_egress_path_config("d.com", "unspecified", "mx.d.com")
    assert config.connection_limit == 3
    assert config.enable_tls.value == "Disabled"
    assert runtime._lua.globals().ARGS == "d.com|unspecified|mx.d.com"


async def test_init_collects_listener_spool_and_log_configuration(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('init', function()
          kumo.start_esmtp_listener{listen = '127.0.0.1:2600', relay_hosts = {'10.0.0.0/8'}}
          kumo.start_http_listener{listen = '127.0.0.1:8001'}
          kumo.define_spool{name = 'data', path = 'spool/data'}
          kumo.configure_local_logs{log_dir = 'logs', max_segment_duration = '10m'}
        end)
        """
    )
    init = await runtime.run_init()
    assert init.esmtp_listeners[0].listen == "127.0.0.1:2600"
    assert init.esmtp_listeners[0].relay_hosts == ("10.0.0.0/8",)
    assert init.http_listeners[0].listen == "127.0.0.1:8001"
    assert init.spools[0].path == str(runtime.path.parent / "spool/data")
    assert init.local_logs is not None
    assert init.local_logs.log_dir == str(runtime.path.parent / "logs")
    assert init.local_logs.max_segment_duration == 600


async def test_init_error_carries_file_line_and_traceback(load_policy: LoadPolicy) -> None:
    runtime = load_policy("kumo.on('init', function()\n  local x = nil + 1\nend)\n")
    with pytest.raises(PolicyError) as info:
        await runtime.run_init()
    assert info.value.location is not None
    assert info.value.location.endswith("policy.lua:2")
    assert info.value.traceback is not None
    assert "stack traceback" in info.value.traceback


async def test_kumo_reject_raises_policy_reject(load_policy: LoadPolicy) -> None:
    runtime = load_policy("kumo.on('init', function() kumo.reject(550, 'go away') end)")
    with pytest.raises(PolicyReject) as info:
        await runtime.run_init()
    assert (info.value.code, info.value.text) == (550, "go away")


@pytest.mark.parametrize(("code", "message"), [("'x'", "got x"), ("200", "got 200")])
async def test_kumo_reject_validates_its_code(
    load_policy: LoadPolicy, code: str, message: str
) -> None:
    runtime = load_policy(f"kumo.on('init', function() kumo.reject({code}, 'no') end)")
    with pytest.raises(
        PolicyError, match=f"kumo.reject: code must be an integer from 400 to 599, {message}"
    ):
        await runtime.run_init()


async def test_auth_basic_is_true_only_for_true(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('http_server_validate_auth_basic', function(user, password)
          if user == 'err' then error('boom') end
          if user == 'one' then return 1 end
          return user == 'admin' and password == 's3cret'
        end)
        """
    )
    assert await runtime.validate_auth_basic("admin", "s3cret") is True
    assert await runtime.validate_auth_basic("admin", "wrong") is False
    assert await runtime.validate_auth_basic("one", "x") is False
    assert await runtime.validate_auth_basic("err", "x") is False


def test_kumo_log_functions_prefix_file_and_line(load_policy: LoadPolicy) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        load_policy("kumo.log_warn('queue', 42, nil, true)\nkumo.log_error('bad')\n")
    assert logs[0]["event"] == "queue 42 nil true"
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["policy_location"].endswith("policy.lua:1")
    assert logs[1]["log_level"] == "error"
    assert logs[1]["policy_location"].endswith("policy.lua:2")
