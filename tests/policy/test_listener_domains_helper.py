"""kumoclient's `policy-extras.listener_domains` on the user guide's `listener_domains.toml`
(read unchanged from the shared reference directory: tests/reference_examples.py): each of its sections answers `get_listener_domain` as its comments say (the event
fired as the listener fires it, with a connection's `conn_meta`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kumoclient.core.listener_domain import ListenerDomain, ReportDisposition
from kumoclient.errors import PolicyError
from kumoclient.policy import smtp_events
from kumoclient.policy.conn_meta import ConnectionMeta
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyRuntime
from tests.reference_examples import kumomta_example

RELAY = ReportDisposition.LOG_THEN_RELAY
IGNORE = ReportDisposition.IGNORE
LISTENER = "127.0.0.1:2025"


def runtime_on(tmp_path: Path, *sources: str) -> PolicyRuntime:
    policy = tmp_path / "policy.lua"
    listed = ", ".join(sources)
    policy.write_text(
        "local listener_domains = require 'policy-extras.listener_domains'\n"
        f"kumo.on('get_listener_domain', listener_domains:setup {{ {listed} }})\n"
    )
    return PolicyRuntime(policy, memo=MemoRegistry())


@pytest.fixture
def runtime(tmp_path: Path) -> PolicyRuntime:
    return runtime_on(tmp_path, repr(str(kumomta_example("listener_domains.toml"))))


def conn(**meta: Any) -> ConnectionMeta:
    return ConnectionMeta({"received_from": "127.0.0.1:40000", **meta}, {})


async def lookup(
    runtime: PolicyRuntime, domain: str, listener: str = LISTENER, **meta: Any
) -> ListenerDomain | None:
    return await smtp_events.listener_domain(runtime, domain, listener, conn(**meta))


async def test_star_is_the_default_for_domains_without_an_entry(runtime: PolicyRuntime) -> None:
    # relay_to = false, log_oob = true, log_arf = true
    assert await lookup(runtime, "unlisted.example") == ListenerDomain(
        relay_to=False, log_oob=RELAY, log_arf=RELAY
    )


async def test_named_domains_have_their_own_entries(runtime: PolicyRuntime) -> None:
    # "allow relaying mail from anyone, so long as it is addressed to example.com"
    assert await lookup(runtime, "example.com") == ListenerDomain(relay_to=True)
    # "accept and log OOB bounce reports sent to bounce.example.com"
    assert await lookup(runtime, "bounce.example.com") == ListenerDomain(log_oob=RELAY)
    # "accept and log ARF feedback reports sent to fbl.example.com"
    assert await lookup(runtime, "fbl.example.com") == ListenerDomain(log_arf=RELAY)
    # "relay to anywhere, so long as the sender domain is send.example.com and the
    # connected peer matches one of the listed CIDR blocks"
    assert await lookup(runtime, "send.example.com") == ListenerDomain(relay_from=("10.0.0.0/24",))


async def test_relay_from_authz_lets_the_authenticated_peer_relay(runtime: PolicyRuntime) -> None:
    # "the connected peer has authenticated as any of the authorization identities listed"
    assert await lookup(runtime, "auth-send.example.com") == ListenerDomain()
    for user in ("username1", "username2"):
        found = await lookup(runtime, "auth-send.example.com", authz_id=user)
        assert found == ListenerDomain(relay_from=("127.0.0.1",))
    assert await lookup(runtime, "auth-send.example.com", authz_id="mallory") == ListenerDomain()


async def test_wildcards_match_below_the_domain_and_explicit_entries_exclude(
    runtime: PolicyRuntime,
) -> None:
    # "This will match <anything>.example.com that doesn't have another non-wildcard entry"
    star = ListenerDomain(relay_to=True, log_oob=RELAY, log_arf=RELAY)
    assert await lookup(runtime, "news.example.com") == star
    assert await lookup(runtime, "a.b.example.com") == star
    # "you can explicitly set options to false to essentially exclude an entry"
    assert await lookup(runtime, "www.example.com") == ListenerDomain(
        relay_to=False, log_arf=IGNORE, log_oob=IGNORE
    )


async def test_a_listener_section_applies_to_that_listener_only(runtime: PolicyRuntime) -> None:
    # [listener."127.0.0.1:25"."*.example.com"] log_oob = false: that entry, whole
    assert await lookup(runtime, "news.example.com", "127.0.0.1:25") == ListenerDomain()
    assert await lookup(runtime, "example.com", "127.0.0.1:25") == ListenerDomain(relay_to=True)


async def test_several_sources_merge_key_by_key(tmp_path: Path) -> None:
    extra = tmp_path / "extra.json"
    extra.write_text(
        '{"example.com": {"log_arf": "LogThenDrop"}, "new.example": {"relay_to": true}}'
    )
    example = kumomta_example("listener_domains.toml")
    runtime = runtime_on(tmp_path, repr(str(example)), repr(str(extra)))
    assert await lookup(runtime, "example.com") == ListenerDomain(
        relay_to=True, log_arf=ReportDisposition.LOG_THEN_DROP
    )
    assert await lookup(runtime, "new.example") == ListenerDomain(relay_to=True)


async def test_a_bad_value_is_refused_naming_the_entry_and_validate_config_reports_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[listener."127.0.0.1:25"."*.example.com"]\nlog_arf = "yes"\n')
    runtime = runtime_on(tmp_path, repr(str(bad)))
    with pytest.raises(PolicyError) as caught:
        await lookup(runtime, "x.example.com")
    assert "ListenerDomainEntry: invalid value for field 'log_arf'" in str(caught.value)
    assert "'Ignore'" in str(caught.value)
    with pytest.raises(PolicyError, match="validation_failed"):
        await runtime.validate_config()
    assert "Issues found in the combined set of listener_domain files" in capfd.readouterr().out


async def test_an_unknown_key_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('["example.com"]\nrelay_too = true\n')
    runtime = runtime_on(tmp_path, repr(str(bad)))
    with pytest.raises(PolicyError, match="unknown field 'relay_too'"):
        await lookup(runtime, "example.com")
