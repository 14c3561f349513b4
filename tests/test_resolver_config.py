"""`kumo.dns.configure_resolver` in `init`: which DNS servers and timeout the engine uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumoclient.configs import ResolverConfig
from kumoclient.engine.routing import resolver_for
from kumoclient.errors import PolicyError
from kumoclient.policy.runtime import PolicyRuntime


def init_of(tmp_path: Path, body: str) -> ResolverConfig | None:
    policy = tmp_path / "p.lua"
    policy.write_text(f"kumo.on('init', function()\n{body}\nend)\n")
    runtime = PolicyRuntime(policy)
    return runtime.run(runtime.run_init()).resolver


def test_name_servers_and_timeout_come_from_init(tmp_path: Path) -> None:
    config = init_of(
        tmp_path,
        "kumo.dns.configure_resolver { name_servers = { '127.0.0.1:5353', '::1' },"
        " options = { timeout = '2s' } }",
    )
    assert config == ResolverConfig(("127.0.0.1:5353", "::1"), 2.0)
    resolver = resolver_for(config)
    assert resolver.timeout == 2.0


def test_without_it_the_system_resolver_is_used(tmp_path: Path) -> None:
    assert init_of(tmp_path, "") is None
    assert resolver_for(None).timeout == 5.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("kumo.dns.configure_resolver { name_servers = { 'dns.example' } }", "not an IP address"),
        ("kumo.dns.configure_resolver { name_servers = {} }", "non-empty list"),
        ("kumo.dns.configure_resolver { servers = { '1.1.1.1' } }", "unknown key 'servers'"),
        ("kumo.dns.configure_resolver { options = { retries = 3 } }", "expected { timeout"),
    ],
)
def test_a_bad_resolver_setting_is_a_clear_error(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        init_of(tmp_path, body)
