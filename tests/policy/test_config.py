"""make_queue_config / make_egress_path / listeners: SPEC 5 defaults, unknown keys, bad values."""

from __future__ import annotations

import socket

import pytest

from kumoclient.configs import MxHost, Rate, TlsMode
from kumoclient.errors import ConfigError
from kumoclient.policy import config


def test_queue_config_defaults() -> None:
    queue = config.make_queue_config({})
    assert queue.retry_interval == 1200
    assert queue.max_retry_interval is None
    assert queue.max_age == 7 * 86400
    assert queue.egress_pool is None
    assert queue.mx_list is None
    assert queue.generate_dsn is False


def test_egress_path_defaults() -> None:
    path = config.make_egress_path({})
    assert path.connection_limit == 32
    assert path.max_deliveries_per_connection == 1024
    assert path.max_message_rate is None
    assert path.max_connection_rate is None
    assert path.enable_tls is TlsMode.OPPORTUNISTIC
    assert path.smtp_port == 25
    assert path.response_line_break == "\\r\\n"
    assert path.prohibited_hosts == ("127.0.0.0/8", "::1", "0.0.0.0", "::")
    assert path.ehlo_domain == socket.getfqdn()
    timeouts = (
        path.connect_timeout,
        path.banner_timeout,
        path.ehlo_timeout,
        path.mail_from_timeout,
        path.rcpt_to_timeout,
        path.data_timeout,
        path.data_dot_timeout,
        path.rset_timeout,
        path.idle_timeout,
        path.starttls_timeout,
    )
    assert timeouts == (60, 60, 300, 300, 300, 300, 300, 5, 5, 5)


def test_listener_defaults() -> None:
    listener = config.start_esmtp_listener({})
    assert listener.listen == "127.0.0.1:2025"
    assert listener.relay_hosts == ("127.0.0.1", "::1")
    assert listener.max_message_size == 20 * 1024 * 1024
    assert config.start_http_listener({}).trusted_hosts == ("127.0.0.1", "::1")


def test_mx_list_entry_forms() -> None:
    queue = config.make_queue_config(
        {
            "protocol": {
                "smtp": {
                    "mx_list": [
                        "mx.example.com",
                        "mx.example.com:2525",
                        "[1.2.3.4]",
                        "[1.2.3.4]:2525",
                        {"name": "x", "addr": "1.2.3.4:2525"},
                        "[::1]:26",
                        "127.0.0.1:25",
                    ]
                }
            }
        }
    )
    assert queue.mx_list == (
        MxHost("mx.example.com", "mx.example.com"),
        MxHost("mx.example.com:2525", "mx.example.com", 2525),
        MxHost("[1.2.3.4]", "1.2.3.4", None, is_literal=True),
        MxHost("[1.2.3.4]:2525", "1.2.3.4", 2525, is_literal=True),
        MxHost("x", "1.2.3.4", 2525, is_literal=True),
        MxHost("[::1]:26", "::1", 26, is_literal=True),
        MxHost("127.0.0.1:25", "127.0.0.1", 25, is_literal=True),
    )


def test_rates() -> None:
    path = config.make_egress_path({"max_message_rate": "100/s", "max_connection_rate": "5000/h"})
    assert path.max_message_rate == Rate(100, 1.0, "100/s")
    assert path.max_connection_rate == Rate(5000, 3600.0, "5000/h")
    assert config.make_egress_path({"max_message_rate": "10/5m"}).max_message_rate == Rate(
        10, 300.0, "10/5m"
    )


def test_durations_as_numbers_and_strings() -> None:
    queue = config.make_queue_config(
        {"retry_interval": "1s", "max_age": 6, "max_retry_interval": "1h"}
    )
    assert (queue.retry_interval, queue.max_age, queue.max_retry_interval) == (1, 6, 3600)


def test_empty_prohibited_hosts_lifts_the_restriction() -> None:
    assert config.make_egress_path({"prohibited_hosts": {}}).prohibited_hosts == ()


BAD = [
    (config.make_queue_config, {"retry_intervall": "1m"}, "unknown key 'retry_intervall'"),
    (config.make_queue_config, {"retry_interval": "soon"}, r"retry_interval = 'soon'"),
    (config.make_queue_config, {"max_age": -1}, r"max_age = -1"),
    (
        config.make_queue_config,
        {"generate_dsn": "yes"},
        r"generate_dsn = 'yes': expected true or false",
    ),
    (config.make_queue_config, {"protocol": {"smtp": {"mx_list": []}}}, "non-empty list"),
    (
        config.make_queue_config,
        {"protocol": {"smtp": {"mx_list": ["[1.2.3]"]}}},
        "is not an IP address",
    ),
    (config.make_queue_config, {"protocol": {"smtp": {"mx_list": ["h:99999"]}}}, "port '99999'"),
    (
        config.make_queue_config,
        {"protocol": {"smtp": {"mx_list": [{"name": "x"}]}}},
        "'name' and 'addr'",
    ),
    (config.make_queue_config, {"protocol": {"lmtp": {}}}, "expected { smtp ="),
    (
        config.make_egress_path,
        {"enable_tls": "Sometimes"},
        "enable_tls = 'Sometimes': expected one of",
    ),
    (config.make_egress_path, {"connection_limit": 0}, "connection_limit = 0: must be at least 1"),
    (config.make_egress_path, {"connection_limit": 2.5}, "expected an integer"),
    (config.make_egress_path, {"smtp_port": 70000}, "at most 65535"),
    (config.make_egress_path, {"max_message_rate": "fast"}, "max_message_rate = 'fast'"),
    (config.make_egress_path, {"max_message_rate": "10/fortnight"}, "unknown period"),
    (config.make_egress_path, {"prohibited_hosts": ["not-an-ip"]}, "not an IP address or CIDR"),
    (config.make_egress_path, {"response_line_break": "\n"}, "response_line_break"),
    (config.start_esmtp_listener, {"listen": "nowhere"}, "expected 'address:port'"),
    (config.start_esmtp_listener, {"max_message_size": "huge"}, "expected a size"),
    (config.define_spool, {"name": "data"}, "missing required key"),
    (config.define_spool, {"name": "data", "path": "x", "kind": "Tape"}, "kind = 'Tape'"),
    (config.configure_local_logs, {}, "missing required key"),
    (config.make_queue_config, [1, 2], "expected a table of options"),
]


@pytest.mark.parametrize(("maker", "params", "message"), BAD)
def test_bad_values_name_function_key_and_value(
    maker: object, params: object, message: str
) -> None:
    assert callable(maker)
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("(", r"\(")):
        maker(params)


def test_error_text_starts_with_the_function_name() -> None:
    with pytest.raises(ConfigError) as info:
        config.make_egress_path({"colour": "red"})
    assert str(info.value).startswith("make_egress_path: unknown key 'colour' (known keys: ")
    assert info.value.key == "colour"
    assert info.value.value == "red"
