"""kumo.on: the event table, single and multi handlers, errors naming file:line."""

from __future__ import annotations

import pytest

from kumoclient.errors import PolicyError, PolicyLoadError, PolicyReject
from kumoclient.policy.events import EVENTS, Handlers
from kumoclient.records import QueueName
from tests.policy.conftest import LoadPolicy


def test_event_table_matches_spec() -> None:
    assert set(EVENTS) == {
        "init",
        "get_queue_config",
        "get_egress_path_config",
        "smtp_client_rewrite_delivery_status",
        "smtp_server_message_received",
        "http_message_generated",
        "http_server_validate_auth_basic",
    }
    singles = {n for n, e in EVENTS.items() if e.handlers is Handlers.SINGLE}
    assert singles == {
        "smtp_client_rewrite_delivery_status",
        "get_egress_path_config",
        "http_server_validate_auth_basic",
    }
    assert EVENTS["smtp_client_rewrite_delivery_status"].args == (
        "response",
        "domain",
        "tenant",
        "campaign",
        "routing_domain",
    )


def test_unknown_event_is_a_load_error_naming_file_and_line(load_policy: LoadPolicy) -> None:
    with pytest.raises(PolicyLoadError, match=r"policy\.lua:3: kumo\.on: unknown event 'nope'"):
        load_policy("-- a comment\n\nkumo.on('nope', function() end)\n")


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


def test_kumo_on_inside_an_event_is_an_error(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('init', function()
          kumo.on('get_queue_config', function() end)
        end)
        """
    )
    with pytest.raises(
        PolicyError, match=r"policy\.lua:3: kumo\.on may only be called at the top level"
    ):
        runtime.run_init()


def test_handler_must_be_a_function(load_policy: LoadPolicy) -> None:
    with pytest.raises(PolicyLoadError, match="the handler must be a function, got number"):
        load_policy("kumo.on('init', 42)")


def test_multi_handler_get_queue_config_stops_at_first_non_nil(load_policy: LoadPolicy) -> None:
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
    assert runtime.get_queue_config(QueueName("a.com")).retry_interval == 60
    assert runtime.get_queue_config(QueueName("b.com")).retry_interval == 120
    assert list(runtime._lua.globals().CALLS.values()) == ["first", "first", "second"]
    assert runtime.registered_events()["get_queue_config"] == [
        f"{runtime.path}:3",
        f"{runtime.path}:7",
    ]


def test_get_queue_config_receives_nil_for_absent_parts(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
          SEEN = table.concat({domain, tostring(tenant), tostring(campaign),
                               tostring(routing_domain)}, '|')
        end)
        """
    )
    runtime.get_queue_config(QueueName("d.com"))
    assert runtime._lua.globals().SEEN == "d.com|nil|nil|nil"
    runtime.get_queue_config(QueueName("d.com", "t", "c", "r.com"))
    assert runtime._lua.globals().SEEN == "d.com|t|c|r.com"


def test_no_handler_gives_defaults(load_policy: LoadPolicy) -> None:
    runtime = load_policy("")
    assert runtime.get_queue_config(QueueName("d.com")).max_age == 7 * 86400
    assert runtime.get_egress_path_config("d.com", "unspecified", "site").connection_limit == 32


def test_get_queue_config_returning_a_plain_table_is_an_error(load_policy: LoadPolicy) -> None:
    runtime = load_policy("kumo.on('get_queue_config', function() return {retry_interval=5} end)")
    with pytest.raises(PolicyError, match=r"returned a table; expected kumo\.make_queue_config"):
        runtime.get_queue_config(QueueName("d.com"))


def test_get_egress_path_config_arguments_and_result(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('get_egress_path_config', function(routing_domain, source, site)
          ARGS = routing_domain .. '|' .. source .. '|' .. site
          return kumo.make_egress_path{connection_limit = 3, enable_tls = 'Disabled'}
        end)
        """
    )
    config = runtime.get_egress_path_config("d.com", "unspecified", "mx.d.com")
    assert config.connection_limit == 3
    assert config.enable_tls.value == "Disabled"
    assert runtime._lua.globals().ARGS == "d.com|unspecified|mx.d.com"


def test_init_collects_listener_spool_and_log_configuration(load_policy: LoadPolicy) -> None:
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
    init = runtime.run_init()
    assert init.esmtp_listeners[0].listen == "127.0.0.1:2600"
    assert init.esmtp_listeners[0].relay_hosts == ("10.0.0.0/8",)
    assert init.http_listeners[0].listen == "127.0.0.1:8001"
    assert init.spools[0].path == str(runtime.path.parent / "spool/data")
    assert init.local_logs is not None
    assert init.local_logs.log_dir == str(runtime.path.parent / "logs")
    assert init.local_logs.max_segment_duration == 600


def test_init_error_carries_file_line_and_traceback(load_policy: LoadPolicy) -> None:
    runtime = load_policy("kumo.on('init', function()\n  local x = nil + 1\nend)\n")
    with pytest.raises(PolicyError) as info:
        runtime.run_init()
    assert info.value.location is not None
    assert info.value.location.endswith("policy.lua:2")
    assert info.value.traceback is not None
    assert "stack traceback" in info.value.traceback


def test_kumo_reject_raises_policy_reject(load_policy: LoadPolicy) -> None:
    runtime = load_policy("kumo.on('init', function() kumo.reject(550, 'go away') end)")
    with pytest.raises(PolicyReject) as info:
        runtime.run_init()
    assert (info.value.code, info.value.text) == (550, "go away")


@pytest.mark.parametrize(("code", "message"), [("'x'", "got x"), ("200", "got 200")])
def test_kumo_reject_validates_its_code(load_policy: LoadPolicy, code: str, message: str) -> None:
    runtime = load_policy(f"kumo.on('init', function() kumo.reject({code}, 'no') end)")
    with pytest.raises(
        PolicyError, match=f"kumo.reject: code must be an integer from 400 to 599, {message}"
    ):
        runtime.run_init()


def test_auth_basic_is_true_only_for_true(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('http_server_validate_auth_basic', function(user, password)
          if user == 'err' then error('boom') end
          if user == 'one' then return 1 end
          return user == 'admin' and password == 's3cret'
        end)
        """
    )
    assert runtime.validate_auth_basic("admin", "s3cret") is True
    assert runtime.validate_auth_basic("admin", "wrong") is False
    assert runtime.validate_auth_basic("one", "x") is False
    assert runtime.validate_auth_basic("err", "x") is False


def test_kumo_log_functions_prefix_file_and_line(load_policy: LoadPolicy) -> None:
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        load_policy("kumo.log_warn('queue', 42, nil, true)\nkumo.log_error('bad')\n")
    assert logs[0]["event"] == "queue 42 nil true"
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["policy_location"].endswith("policy.lua:1")
    assert logs[1]["log_level"] == "error"
    assert logs[1]["policy_location"].endswith("policy.lua:2")
