"""kumo.dns through a real policy: each reference page's example against a real DNS server in
the test's event loop (its zones named as the examples name them), define_resolver's forms,
the delivery resolver's cache shared with the policy, and errors at the policy's line.

A handler's lookups run on this test's event loop, where the DNS server answers them; code at
the top level of a policy runs while it loads (on a loop of its own), so the examples that ask
the DNS server run inside handlers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kumoclient.errors import PolicyError
from kumoclient.mx import MxResolver, forget_resolver, system, use_resolver
from kumoclient.policy.runtime import PolicyRuntime
from tests.dns_server import DnsServer
from tests.policy.conftest import LoadPolicy

GMAIL = """\
$TTL 1620
@ MX 30 alt3.gmail-smtp-in.l.google.com.
@ MX 40 alt4.gmail-smtp-in.l.google.com.
@ MX 5 gmail-smtp-in.l.google.com.
@ MX 10 alt1.gmail-smtp-in.l.google.com.
@ MX 20 alt2.gmail-smtp-in.l.google.com.
@ TXT "v=spf1 redirect=_spf.google.com"
@ TXT "globalsign-smime-dv=CDYX+XFHUw2wml6/Gb8+59BsH31KzUr6c1l2BPvqKX8="
"""
SPAMCOP = """\
2.0.0.127 300 A 127.0.0.2
2.0.0.127 300 TXT "Blocked - see https://www.spamcop.net/bl.shtml?127.0.0.2"
"""
RBL = '1.0.0.10 30 A 127.0.0.2\n1.0.0.10 300 TXT "Blocked for a very " "good reason!"\n'
LOCAL = "nodata 300 A 192.0.2.1\nnullmx 300 MX 0 .\n"


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    more = {
        "bl.spamcop.net.": SPAMCOP,
        "0.0.127.in-addr.arpa.": "1 300 PTR localhost.\n",
        "rbl.domain.": RBL,
        "test.": LOCAL,
    }
    async with DnsServer(GMAIL, "gmail.com.", servfail=["broken.test"], more=more) as running:
        yield running


@pytest.fixture
def resolver(server: DnsServer) -> Iterator[MxResolver]:
    """The delivery resolver (as an engine makes it current), asking the test's server."""
    resolver = MxResolver([server.address], timeout=2.0)
    use_resolver(resolver)
    yield resolver
    forget_resolver(resolver)


async def run(runtime: PolicyRuntime, event: str = "example", *args: object) -> object:
    fired = await runtime.fire(event, *args)
    assert fired.status == "ok", fired.value
    return fired.value


async def table(runtime: PolicyRuntime, event: str = "example", *args: object) -> object:
    """A handler's result given as `kumo.json_encode(...)`, as data."""
    text = await run(runtime, event, *args)
    assert isinstance(text, str)
    return json.loads(text)


# --- the reference pages' examples ------------------------------------------------------------


async def test_lookup_mx_example(load_policy: LoadPolicy, resolver: MxResolver) -> None:
    """The page's gmail.com table, plus `is_secure` (KumoMTA's answer has it too)."""
    runtime = load_policy(
        """
        local utils = require 'policy-extras.policy_utils'
        kumo.on('example', function()
          local gmail_mx = kumo.dns.lookup_mx 'gmail.com'
          local example = {
            by_pref = {
              [5] = { 'gmail-smtp-in.l.google.com.' },
              [10] = { 'alt1.gmail-smtp-in.l.google.com.' },
              [20] = { 'alt2.gmail-smtp-in.l.google.com.' },
              [30] = { 'alt3.gmail-smtp-in.l.google.com.' },
              [40] = { 'alt4.gmail-smtp-in.l.google.com.' },
            },
            site_name = '(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com',
            domain_name = 'gmail.com.',
            hosts = {
              'gmail-smtp-in.l.google.com.',
              'alt1.gmail-smtp-in.l.google.com.',
              'alt2.gmail-smtp-in.l.google.com.',
              'alt3.gmail-smtp-in.l.google.com.',
              'alt4.gmail-smtp-in.l.google.com.',
            },
            is_domain_literal = false,
            is_mx = true,
            mta_sts = 'None',
            is_secure = false,
          }
          utils.assert_eq(gmail_mx, example)
          return gmail_mx.site_name
        end)
        """
    )
    assert await run(runtime) == "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com"


def test_lookup_mx_with_a_test_resolver_example(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local kumo = require 'kumo'
        kumo.dns.define_resolver('my_resolver', {
          Test = {
            zones = {
              [[
        $ORIGIN example.com.
        @       600  IN MX 2 two.example.com.
                        MX 1 one.example.com.
        ]],
            },
          },
        })
        local list = kumo.dns.lookup_mx('example.com', 'my_resolver')
        RESULT = kumo.json_encode { list.hosts, list.by_pref[1], list.by_pref[2] }
        """
    )
    assert runtime._lua.eval("RESULT") == (
        '[["one.example.com.","two.example.com."],["one.example.com."],["two.example.com."]]'
    )


async def test_lookup_mx_of_a_domain_without_mx_a_null_mx_and_a_literal(
    load_policy: LoadPolicy, resolver: MxResolver
) -> None:
    runtime = load_policy(
        """
        kumo.on('example', function(domain)
          local mx = kumo.dns.lookup_mx(domain)
          return kumo.json_encode {
            mx.hosts, mx.by_pref, mx.site_name, mx.is_mx, mx.is_domain_literal,
          }
        end)
        """
    )
    assert await table(runtime, "example", "nodata.test") == [
        ["nodata.test."],
        [["nodata.test."]],  # by_pref = { [1] = {...} }
        "nodata.test",
        False,
        False,
    ]
    assert await table(runtime, "example", "nullmx.test") == [["."], {"0": ["."]}, "", True, False]
    literal = ["10.0.0.1:2525"], [["10.0.0.1:2525"]], "10.0.0.1:2525", False, True
    assert await table(runtime, "example", "[10.0.0.1]:2525") == list(literal)


async def test_lookup_mx_with_a_port_keeps_it_on_each_host(
    load_policy: LoadPolicy, resolver: MxResolver
) -> None:
    runtime = load_policy(
        "kumo.on('example', function(d) local mx = kumo.dns.lookup_mx(d)"
        " return kumo.json_encode { mx.hosts[1], mx.site_name, mx.domain_name } end)"
    )
    assert await table(runtime, "example", "gmail.com:2525") == [
        "gmail-smtp-in.l.google.com.:2525",
        "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com:2525",
        "gmail.com.",
    ]


def test_lookup_addr_example_reads_the_hosts_file(
    load_policy: LoadPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 localhost\n")
    monkeypatch.setattr(system, "HOSTS_FILE", str(hosts))
    runtime = load_policy(
        """
        RESULT = kumo.json_encode(kumo.dns.lookup_addr 'localhost')
        V6 = kumo.json_encode(kumo.dns.lookup_addr('localhost', nil, 'Ipv6Only'))
        """
    )
    assert runtime._lua.eval("RESULT") == '["127.0.0.1","::1"]'
    assert runtime._lua.eval("V6") == '["::1"]'


async def test_lookup_addr_asks_dns_for_other_names(
    load_policy: LoadPolicy, resolver: MxResolver
) -> None:
    runtime = load_policy(
        "kumo.on('example', function(n, s)"
        " return kumo.json_encode(kumo.dns.lookup_addr(n, nil, s)) end)"
    )
    assert await table(runtime, "example", "nodata.test") == ["192.0.2.1"]
    assert await table(runtime, "example", "[192.0.2.9]") == ["192.0.2.9"]
    fired = await runtime.fire("example", "nodata.test", "Sideways")
    assert fired.status == "error"
    assert "policy.lua:1: kumo.dns.lookup_addr: unknown strategy 'Sideways'" in str(fired.value)


async def test_lookup_txt_example(load_policy: LoadPolicy, resolver: MxResolver) -> None:
    runtime = load_policy(
        """
        kumo.on('example', function()
          assert(
            kumo.serde.json_encode(kumo.dns.lookup_txt 'gmail.com')
              == '["v=spf1 redirect=_spf.google.com","globalsign-smime-dv=CDYX+XFHUw2wml6/Gb8+59BsH31KzUr6c1l2BPvqKX8="]'
          )
          return true
        end)
        """
    )
    assert await run(runtime) is True


async def test_lookup_ptr_example(load_policy: LoadPolicy, resolver: MxResolver) -> None:
    runtime = load_policy(
        """
        kumo.on('example', function(ip)
          local seen = {}
          local ok, records = pcall(kumo.dns.lookup_ptr, ip)
          if ok then
            for _, a in ipairs(records) do
              seen[#seen + 1] = a
            end
          end
          return kumo.json_encode { ok, seen }
        end)
        """
    )
    assert await table(runtime, "example", "127.0.0.1") == [True, ["localhost."]]
    assert await table(runtime, "example", "127.0.0.9") == [True, {}]  # no such name: empty
    assert await table(runtime, "example", "not an ip") == [False, {}]


def test_ptr_host_and_reverse_ip_examples(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        RESULT = {
          kumo.dns.ptr_host '127.0.0.1', kumo.dns.ptr_host '::1',
          kumo.dns.reverse_ip '127.0.0.1', kumo.dns.reverse_ip '::1',
        }
        """
    )
    v6 = ".".join(["1"] + ["0"] * 31)
    assert list(runtime._lua.eval("RESULT").values()) == [
        "1.0.0.127.in-addr.arpa",
        f"{v6}.ip6.arpa",
        "1.0.0.127",
        v6,
    ]


async def test_rbl_lookup_spamcop_example(load_policy: LoadPolicy, resolver: MxResolver) -> None:
    runtime = load_policy(
        """
        local utils = require 'policy-extras.policy_utils'
        kumo.on('example', function()
          local ip, reason = kumo.dns.rbl_lookup('127.0.0.2', 'bl.spamcop.net')
          print(ip, reason)
          utils.assert_eq(ip, '127.0.0.2')
          utils.assert_eq(
            reason,
            'Blocked - see https://www.spamcop.net/bl.shtml?127.0.0.2'
          )
          local listed, why = kumo.dns.rbl_lookup('127.0.0.3:25', 'bl.spamcop.net')
          return kumo.json_encode { listed == nil, why == nil }
        end)
        """
    )
    assert await table(runtime) == [True, True]


async def test_rbl_lookup_real_world_example_rejects(
    load_policy: LoadPolicy, resolver: MxResolver
) -> None:
    runtime = load_policy(
        """
        kumo.on('example', function(received_from)
          local ip, reason =
            kumo.dns.rbl_lookup(received_from, 'bl.spamcop.net')
          if ip then
            kumo.reject(550, string.format('5.7.1 %s', reason))
          end
        end)
        """
    )
    fired = await runtime.fire("example", "127.0.0.2:41234")
    assert (fired.status, fired.value) == ("reject", 550)
    assert fired.detail == "5.7.1 Blocked - see https://www.spamcop.net/bl.shtml?127.0.0.2"
    assert (await runtime.fire("example", "[::1]:41234")).status == "ok"


# --- define_resolver -------------------------------------------------------------------------


async def test_define_resolver_forms(load_policy: LoadPolicy, server: DnsServer) -> None:
    runtime = load_policy(
        f"""
        kumo.dns.define_resolver('rbl', {{
          Hickory = {{ name_servers = {{ '{server.address}' }}, options = {{ timeout = '2s' }} }},
        }})
        kumo.dns.define_resolver('static', {{
          Test = {{
            servfail = {{ '1.0.0.11.rbl.domain' }},
            zones = {{
              [[
        $ORIGIN rbl.domain.
        1.0.0.10 30 IN A   127.0.0.2
        1.0.0.10 300   TXT "Blocked for a very good reason!"
          ]],
            }},
          }},
        }})
        kumo.dns.define_resolver('aggregate', {{
          Aggregate = {{
            {{ Test = {{ {{ zone = '$ORIGIN over.example.\\n@ 60 A 10.1.1.1\\n' }} }} }},
            {{ Unbound = {{ name_servers = {{ {{ socket_addr = '{server.address}' }} }} }} }},
          }},
        }})
        kumo.dns.define_resolver('system', 'HickorySystemConfig')
        kumo.on('example', function(resolver, ip)
          return kumo.json_encode {{ kumo.dns.rbl_lookup(ip, 'rbl.domain', resolver) }}
        end)
        kumo.on('addr', function(name)
          return kumo.json_encode(kumo.dns.lookup_addr(name, 'aggregate'))
        end)
        """
    )
    listed = ["127.0.0.2", "Blocked for a very good reason!"]
    assert await table(runtime, "example", "rbl", "10.0.0.1") == listed
    assert await table(runtime, "example", "static", "10.0.0.1") == listed
    assert await table(runtime, "example", "rbl", "10.0.0.2") == {}  # nil, nil
    failed = await runtime.fire("example", "static", "11.0.0.1")
    assert failed.status == "error"
    assert "A lookup for 1.0.0.11.rbl.domain failed: SERVFAIL" in str(failed.value)
    assert await table(runtime, "addr", "over.example") == ["10.1.1.1"]
    assert await table(runtime, "addr", "nodata.test") == ["192.0.2.1"]
    assert server.count("over.example") == 0


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("'Hickory'", "CONFIG is one of 'HickorySystemConfig'"),
        ("{ Hickory = { name_servers = { 'dns.example' } } }", "not an IP address"),
        ("{ Hickory = { options = { edns0 = true } } }", "options.edns0 is not supported"),
        ("{ Hickory = { servers = {} } }", "unknown key 'servers'"),
        (
            "{ Hickory = { name_servers = { { socket_addr = '10.0.0.1:53', protocol = 'tcp' } } } }",
            "protocol 'tcp' is not supported",
        ),
        ("{ Test = { zones = { 'a 1 A 10.0.0.1' } } }", "zone 1: the zone text has no $ORIGIN"),
        ("{ Aggregate = { 'Bogus' } }", 'define_resolver("x").Aggregate[0]: CONFIG is one of'),
    ],
)
def test_define_resolver_refuses_a_bad_config_at_its_line(
    load_policy: LoadPolicy, config: str, message: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(f"local x = 1\nkumo.dns.define_resolver('x', {config})\n")
    assert "/policy.lua:2: kumo.dns.define_resolver" in str(caught.value)
    assert message in str(caught.value)


# --- the delivery resolver, errors ----------------------------------------------------------


async def test_policy_lookups_use_the_delivery_resolver_and_its_cache(
    load_policy: LoadPolicy, resolver: MxResolver, server: DnsServer
) -> None:
    runtime = load_policy(
        "kumo.on('example', function() return kumo.dns.lookup_mx 'gmail.com' end)"
    )
    await run(runtime)
    await run(runtime)
    answer = await resolver.resolve("gmail.com")  # what delivery asks, from the same cache
    assert answer.hosts[0] == "gmail-smtp-in.l.google.com"
    assert server.count("gmail.com", "MX") == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            "kumo.dns.lookup_mx 'missing.gmail.com'",
            "MX lookup for missing.gmail.com failed: NXDOMAIN",
        ),
        (
            "kumo.dns.lookup_txt 'missing.gmail.com'",
            "TXT lookup for missing.gmail.com failed: NXDOMAIN",
        ),
        ("kumo.dns.lookup_addr 'broken.test'", "A/AAAA lookup for broken.test failed: SERVFAIL"),
        (
            "kumo.dns.lookup_mx('gmail.com', 'nope')",
            "kumo.dns.lookup_mx: resolver nope is not defined",
        ),
        (
            "kumo.dns.rbl_lookup('nope', 'x')",
            "kumo.dns.rbl_lookup: nope is not a valid IpAddr or SocketAddr",
        ),
        (
            "kumo.dns.lookup_mx '[10.0.0.1'",
            "kumo.dns.lookup_mx: '[10.0.0.1' is a literal with no closing ']'",
        ),
    ],
)
async def test_lookup_errors_name_the_policy_line(
    load_policy: LoadPolicy, resolver: MxResolver, call: str, message: str
) -> None:
    runtime = load_policy(f"kumo.on('example', function()\n  return {call}\nend)\n")
    fired = await runtime.fire("example")
    assert fired.status == "error"
    assert f"/policy.lua:2: {message}" in str(fired.value)


def test_ptr_host_of_something_else_is_an_error_at_its_line(load_policy: LoadPolicy) -> None:
    with pytest.raises(PolicyError, match=r"/policy.lua:3: kumo.dns.ptr_host: 'x' is not an IP"):
        load_policy("\n\nkumo.dns.ptr_host 'x'\n")
