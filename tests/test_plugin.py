"""The pytest plugin `kumoclient.testing`: operators' policy tests in a few lines.

The first test is what docs/testing.md shows a user writing; the pytester test runs such a
file in a project of its own, through the installed pytest11 entry point.
"""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path

import pytest

from kumoclient.errors import PolicyLoadError, SubmissionRefused
from kumoclient.testing import (
    EngineFactory,
    KumoEngine,
    LogRecord,
    ScriptedMX,
    make_message,
)

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OVER_QUOTA = "452 4.2.2 The email account that you tried to reach is over quota."


# --- what a user writes (docs/testing.md): SPEC 4.4's policy, under 20 lines -----------------


async def test_over_quota_becomes_a_bounce(scripted_mx, kumo_engine):
    scripted_mx.reply("full@example.com", OVER_QUOTA)
    engine = await kumo_engine("../examples/dsn_rewrite.lua", mx=scripted_mx)

    result = await engine.deliver("full@example.com")

    assert result.type == "Bounce"
    assert result.code == 500
    assert result.content.endswith("(kumomta: status was rewritten from 452 -> 500)")
    assert scripted_mx.received == []


# --- the plugin from an outside project ------------------------------------------------------

USER_TEST = """
import pytest

OVER_QUOTA = "452 4.2.2 The email account that you tried to reach is over quota."


@pytest.mark.asyncio
async def test_over_quota_bounces(scripted_mx, kumo_engine):
    scripted_mx.reply("full@example.com", OVER_QUOTA)
    engine = await kumo_engine("policy/main.lua", mx=scripted_mx)
    result = await engine.deliver("full@example.com")
    assert result.type == "Bounce"
    assert result.content.endswith("(kumomta: status was rewritten from 452 -> 500)")


@pytest.mark.asyncio
async def test_other_replies_are_kept(kumo_engine, scripted_mx):  # MX torn down first
    scripted_mx.reply("busy@example.com", "451 4.3.0 Try later")
    engine = await kumo_engine("policy/main.lua", mx=scripted_mx)
    assert (await engine.deliver("ok@example.com")).type == "Delivery"
    assert (await engine.deliver("busy@example.com")).type == "TransientFailure"
    assert len(scripted_mx.received) == 1


def test_fixtures_are_listed(request):
    names = request.config.pluginmanager.get_plugin("kumoclient")
    assert names is not None
"""


def test_plugin_works_in_an_outside_project(pytester: pytest.Pytester) -> None:
    """The installed entry point provides the fixtures to any project; strict asyncio mode,
    warnings as errors (nothing leaks at teardown)."""
    policy_dir = pytester.path / "policy"
    policy_dir.mkdir()
    (policy_dir / "main.lua").write_text((EXAMPLES / "dsn_rewrite.lua").read_text())
    (policy_dir / "dsn_rewrite.json").write_text((EXAMPLES / "dsn_rewrite.json").read_text())
    pytester.makeini(
        """
        [pytest]
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    pytester.makepyfile(test_my_policy=USER_TEST)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")

    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["plugins:*kumoclient-*"])
    result.stdout.no_fnmatch_line("*Task was destroyed*")
    result.stderr.no_fnmatch_line("*Task was destroyed*")


def test_fixtures_tell_what_they_do(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest("--fixtures", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(
        [
            "*fixtures defined from kumoclient.testing*",
            "scripted_mx*",
            "*A started ScriptedMX*",
            "kumo_engine*",
            "*Start engines*",
        ]
    )


# --- the parts -------------------------------------------------------------------------------


def _policy(tmp_path: Path, source: str, name: str = "policy.lua") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


ELSEWHERE = """
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    retry_interval = '1 hour',
    protocol = { smtp = { mx_list = { '192.0.2.1:25' } } },
  }
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {
    enable_tls = 'Required', source_address = '192.0.2.2', connect_timeout = '1s',
  }
end)
"""


async def test_replies_are_scripted_per_recipient_and_phase(
    scripted_mx: ScriptedMX, kumo_engine: EngineFactory, tmp_path: Path
) -> None:
    scripted_mx.reply("rcpt@example.com", "550 5.1.1 No such user")
    scripted_mx.reply("Data@Example.com", "554 5.7.1 No DATA for you", phase="data")
    scripted_mx.reply("dot@example.com", "552 5.3.4 Message too big", phase="DOT")
    scripted_mx.reply("refused@example.org", "553 5.7.1 Sender refused", phase="MAIL")
    engine = await kumo_engine(_policy(tmp_path, ELSEWHERE), mx=scripted_mx)

    ok = await engine.deliver("ok@example.com")
    rcpt = await engine.deliver("rcpt@example.com")
    data = await engine.deliver("data@example.com")
    dot = await engine.deliver("dot@example.com")
    mail = await engine.deliver("ok@example.com", sender="refused@example.org")

    assert (ok.type, ok.code, ok.command) == ("Delivery", 250, ".\r\n")
    assert (rcpt.type, rcpt.response) == ("Bounce", "550 5.1.1 No such user")
    assert rcpt.command == "RCPT TO:<rcpt@example.com>\r\n"
    assert (data.type, data.code, data.command) == ("Bounce", 554, "DATA\r\n")
    assert (dot.type, dot.enhanced_code, dot.command) == ("Bounce", "5.3.4", ".\r\n")
    assert (mail.type, mail.code) == ("Bounce", 553)
    assert mail.command is not None
    assert mail.command.startswith("MAIL FROM:<refused@example.org>")
    [received] = scripted_mx.received
    assert received.sender == "sender@example.com"
    assert received.recipients == ["ok@example.com"]
    assert received.message["To"] == "ok@example.com"
    assert [r.type for r in engine.dispositions] == ["Delivery"] + ["Bounce"] * 4
    assert [r.type for r in engine.records].count("Reception") == 5


async def test_a_multi_line_reply_reaches_the_hook_as_one_line(
    scripted_mx: ScriptedMX, kumo_engine: EngineFactory, tmp_path: Path
) -> None:
    scripted_mx.reply("gone@example.com", "550-5.1.1 No such user\r\n550 5.1.1 Try another")
    hook = r"""
    kumo.on('smtp_client_rewrite_delivery_status', function(response)
      if response == '550 5.1.1 No such user\\r\\nTry another' then return 450 end
    end)
    """
    engine = await kumo_engine(_policy(tmp_path, hook), mx=scripted_mx)

    result = await engine.deliver("gone@example.com")

    assert result.type == "TransientFailure"
    assert result.response == (
        "450 5.1.1 No such user Try another (kumomta: status was rewritten from 550 -> 450)"
    )


async def test_a_wildcard_reply_answers_every_other_address(
    scripted_mx: ScriptedMX, kumo_engine: EngineFactory, tmp_path: Path
) -> None:
    scripted_mx.reply("*", "421 4.3.2 System not accepting network messages")
    scripted_mx.reply("vip@example.com", "250 2.1.5 Welcome")
    engine = await kumo_engine(_policy(tmp_path, ""), mx=scripted_mx)

    assert (await engine.deliver("anyone@example.com")).type == "TransientFailure"
    assert (await engine.deliver("vip@example.com")).type == "Delivery"
    with pytest.raises(ValueError, match="phase must be one of"):
        scripted_mx.reply("x@example.com", "550 no", phase="EHLO")
    with pytest.raises(ValueError, match="status code"):
        scripted_mx.reply("x@example.com", "hello")


async def test_a_delivery_reaches_the_mx_whatever_the_policy_routing(
    scripted_mx: ScriptedMX, kumo_engine: EngineFactory, tmp_path: Path
) -> None:
    """The policy routes to 192.0.2.1 from 192.0.2.2 with TLS required and the default
    prohibited_hosts; the engine under test still delivers to the scripted MX on 127.0.0.1,
    in clear text."""
    engine = await kumo_engine(_policy(tmp_path, ELSEWHERE), mx=scripted_mx)
    content = "Subject: routed\n\nbody line\n.leading dot\n"

    result = await engine.deliver(
        "you@example.net", sender="me@example.com", content=content, meta={"tenant": "acme"}
    )

    assert result.type == "Delivery"
    assert result.raw["queue"] == "acme@example.net"
    assert result.raw["peer_address"]["addr"] == scripted_mx.address
    assert scripted_mx.received == [
        (
            "me@example.com",
            ["you@example.net"],
            b"Subject: routed\r\n\r\nbody line\r\n.leading dot\r\n",
        )
    ]


async def test_a_transient_failure_is_seen_without_waiting_for_the_retry(
    scripted_mx: ScriptedMX, kumo_engine: EngineFactory, tmp_path: Path
) -> None:
    scripted_mx.reply("later@example.com", "451 4.7.1 Greylisted, try again later")
    engine = await kumo_engine(_policy(tmp_path, ELSEWHERE), mx=scripted_mx)
    started = time.monotonic()

    [message_id] = await engine.submit("later@example.com")
    first = await engine.next_disposition(message_id)

    assert first.type == "TransientFailure"
    assert (first.code, first.enhanced_code, first.num_attempts) == (451, "4.7.1", 0)
    assert not first.final
    assert str(first) == "TransientFailure: 451 4.7.1 Greylisted, try again later"
    assert time.monotonic() - started < 10  # the retry is an hour away
    with pytest.raises(TimeoutError, match=r"its records so far: Reception; TransientFailure"):
        await engine.final_disposition(message_id, timeout=0.2)


async def test_final_disposition_skips_transient_failures(
    scripted_mx: ScriptedMX, kumo_engine: EngineFactory, tmp_path: Path
) -> None:
    scripted_mx.reply("soon@example.com", "451 4.3.0 Busy")
    quick_retry = """
    kumo.on('get_queue_config', function()
      return kumo.make_queue_config { retry_interval = '0.1s' }
    end)
    """
    engine = await kumo_engine(_policy(tmp_path, quick_retry), mx=scripted_mx)

    [message_id] = await engine.submit("soon@example.com")
    first = await engine.next_disposition(message_id)
    scripted_mx.replies.clear()
    final = await engine.final_disposition(message_id)

    assert first.type == "TransientFailure"
    assert (final.type, final.num_attempts) == ("Delivery", 1)


async def test_the_rewrite_hook_sees_the_queue_name(
    scripted_mx: ScriptedMX, kumo_engine: EngineFactory, tmp_path: Path
) -> None:
    """The policy decides per tenant; meta given to deliver() reaches the hook."""
    per_tenant = """
    kumo.on('smtp_client_rewrite_delivery_status',
      function(response, domain, tenant, campaign, routing_domain)
        if tenant == 'strict' and response:find('^452') then return 550 end
      end)
    """
    scripted_mx.reply("*", OVER_QUOTA)
    engine = await kumo_engine(_policy(tmp_path, per_tenant), mx=scripted_mx)

    strict = await engine.deliver("a@example.com", meta={"tenant": "strict"})
    lenient = await engine.deliver("a@example.com", meta={"tenant": "lenient"})

    assert (strict.type, strict.code) == ("Bounce", 550)
    assert strict.content.endswith("(kumomta: status was rewritten from 452 -> 550)")
    assert (lenient.type, lenient.code) == ("TransientFailure", 452)


async def test_via_smtp_runs_the_reception_event(
    scripted_mx: ScriptedMX, kumo_engine: EngineFactory, tmp_path: Path
) -> None:
    reception = """
    kumo.on('smtp_server_message_received', function(msg)
      if msg:recipient().email == 'blocked@example.com' then
        kumo.reject(550, '5.7.1 not from here')
      end
      msg:import_headers { { name = 'X-Tenant', target = 'tenant' } }
    end)
    """
    engine = await kumo_engine(_policy(tmp_path, reception), mx=scripted_mx)
    content = make_message(recipients=["a@example.com", "b@example.com"]).replace(
        b"Subject:", b"X-Tenant: acme\r\nSubject:"
    )

    ids = await engine.submit(["a@example.com", "b@example.com"], content=content, via_smtp=True)
    results = [await engine.next_disposition(i) for i in ids]

    assert [r.recipient for r in results] == ["a@example.com", "b@example.com"]
    assert [r.raw["meta"].get("tenant") for r in results] == ["acme", "acme"]
    assert [r.raw["queue"] for r in results] == ["acme@example.com", "acme@example.com"]
    assert {r.raw["reception_protocol"] for r in results} == {"ESMTP"}
    with pytest.raises(SubmissionRefused, match=r"550 5\.7\.1 not from here"):
        await engine.deliver("blocked@example.com", via_smtp=True)
    with pytest.raises(ValueError, match="meta is set by the policy"):
        await engine.submit("a@example.com", meta={"tenant": "x"}, via_smtp=True)


async def test_without_mx_the_policy_routing_is_used(
    scripted_mx: ScriptedMX, kumo_engine: EngineFactory, tmp_path: Path
) -> None:
    own_routing = f"""
    kumo.on('get_queue_config', function()
      return kumo.make_queue_config {{
        protocol = {{ smtp = {{ mx_list = {{ '{scripted_mx.address}' }} }} }},
      }}
    end)
    """
    engine = await kumo_engine(_policy(tmp_path, own_routing))

    bounced = await engine.deliver("a@example.com")

    # the policy kept the default prohibited_hosts: loopback is refused, as in the daemon
    assert (bounced.type, bounced.code, bounced.enhanced_code) == ("Bounce", 550, "5.4.4")
    assert scripted_mx.connections == 0


async def test_a_pipelining_mx_and_an_address_string(
    kumo_engine: EngineFactory, tmp_path: Path
) -> None:
    async with ScriptedMX(pipelining=True) as mx:
        mx.reply("no@example.com", "550 5.1.1 No such user")
        engine = await kumo_engine(_policy(tmp_path, ""), mx=mx.address)
        ok = await engine.deliver("ok@example.com")
        no = await engine.deliver("no@example.com")
        await engine.stop()
    assert (ok.type, no.type, no.code) == ("Delivery", "Bounce", 550)
    assert mx.connections == 1  # the second message reused the connection


async def test_memoize_caches_are_per_engine(
    scripted_mx: ScriptedMX, kumo_engine: EngineFactory, tmp_path: Path
) -> None:
    """SPEC 4.4's policy memoizes its rules for 5 minutes; a fresh engine reads them again."""
    policy = tmp_path / "dsn_rewrite.lua"
    policy.write_text((EXAMPLES / "dsn_rewrite.lua").read_text())
    rules = tmp_path / "dsn_rewrite.json"
    scripted_mx.reply("*", OVER_QUOTA)

    rules.write_text('{"over quota": 500}')
    first = await kumo_engine(policy, mx=scripted_mx)
    assert (await first.deliver("a@example.com")).code == 500
    rules.write_text('{"over quota": 552}')
    second = await kumo_engine(policy, mx=scripted_mx)

    assert (await second.deliver("a@example.com")).code == 552
    assert (await first.deliver("a@example.com")).code == 500  # its own cache, still fresh


async def test_a_broken_policy_fails_the_start(
    kumo_engine: EngineFactory, tmp_path: Path, scripted_mx: ScriptedMX
) -> None:
    broken = _policy(tmp_path, "kumo.on('get_queue_config', function()\n", "broken.lua")
    with pytest.raises(PolicyLoadError, match=r"broken\.lua"):
        await kumo_engine(broken, mx=scripted_mx)
    with pytest.raises(PolicyLoadError, match="no such file"):
        await kumo_engine("no-such-policy.lua", mx=scripted_mx)


async def test_stopping_leaves_nothing_running(tmp_path: Path) -> None:
    """What the fixtures do at teardown: no task, no listening socket, no open connection
    (the MX is stopped while the engine still holds an idle connection to it)."""
    before = asyncio.all_tasks()
    mx = ScriptedMX()
    await mx.start()
    address = mx.address
    engine = await KumoEngine.start(_policy(tmp_path, ""), data_dir=tmp_path / "d", mx=mx)
    assert (await engine.deliver("a@example.com")).type == "Delivery"

    await mx.stop()
    await engine.stop()
    await engine.stop()  # idempotent

    assert asyncio.all_tasks() == before
    host, port = address.split(":")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(host, int(port))
    with pytest.raises(RuntimeError, match="not started"):
        _ = mx.address


def test_log_records_are_taken_apart() -> None:
    record = {
        "type": "Bounce",
        "id": "0" * 32,
        "recipient": "a@example.com",
        "num_attempts": 2,
        "response": {
            "code": 500,
            "enhanced_code": {"class": 4, "subject": 2, "detail": 2},
            "content": "Over quota (kumomta: status was rewritten from 452 -> 500)",
            "command": "RCPT TO:<a@example.com>\r\n",
        },
    }
    parsed = LogRecord.from_record(record)
    assert parsed.final
    assert parsed.response == "500 4.2.2 Over quota (kumomta: status was rewritten from 452 -> 500)"
    reception = LogRecord.from_record({"type": "Reception", "id": "1" * 32, "response": None})
    assert (reception.code, reception.content, str(reception)) == (None, "", "Reception")
