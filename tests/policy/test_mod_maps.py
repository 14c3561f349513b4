"""kumo.domain_map.new and kumo.cidr.make_map: the reference examples and their rules."""

from __future__ import annotations

import pytest

from kumoclient.errors import ConfigError, PolicyLoadError
from kumoclient.policy.modules import cidr, domain_map
from tests.policy.conftest import LoadPolicy


def test_reference_examples_of_domain_map(load_policy: LoadPolicy) -> None:
    load_policy(
        """
        local dmap = kumo.domain_map.new()
        dmap['foo'] = 'bar'
        assert(dmap['foo'] == 'bar')
        assert(dmap['not.set'] == nil)

        local dmap = kumo.domain_map.new()
        dmap['*.example.com'] = 'wildcard'
        assert(dmap['example.com'] == nil)
        assert(dmap['foo.example.com'] == 'wildcard')
        dmap['explicit.example.com'] = 'explicit'
        assert(dmap['explicit.example.com'] == 'explicit')

        local dmap = kumo.domain_map.new {
          ['*.woot.com'] = 123,
          ['example.com'] = 24,
        }
        dmap['*.example.com'] = 42
        assert(dmap['lemon.example.com'] == 42)
        assert(dmap['example.com'] == 24)
        assert(dmap['woot.com'] == nil)
        assert(dmap['aa.woot.com'] == 123)
        """
    )


def test_domain_map_walks_labels_like_kumomta() -> None:
    dmap = domain_map.new({"*.example.com": 42, "example.com": 24, "omg.wtf.woot.example.com": 128})
    assert dmap.get("foo.com") is None
    assert dmap.get("example.com") == 24
    assert dmap.get("lemon.example.com") == 42
    assert dmap.get("lemon.cake.example.com") == 42  # any depth below
    assert dmap.get("woot.example.com") is None  # a node of its own, without a value
    assert dmap.get("wtf.woot.example.com") is None
    assert dmap.get("omg.wtf.woot.example.com") == 128
    assert dmap.get("Lemon.Example.com") is None  # case-sensitive, as KumoMTA's


def test_domain_map_values_can_be_tables_and_pairs_lists_keys(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local m = kumo.domain_map.new { ['*.a.com'] = { pool = 'x' }, ['b.com'] = 1 }
        POOL = m['z.a.com'].pool
        local keys = {}
        for k in pairs(m) do keys[#keys + 1] = k end
        KEYS = table.concat(keys, ',')
        """
    )
    g = runtime._lua.globals()
    assert (g.POOL, g.KEYS) == ("x", "*.a.com,b.com")


def test_reference_examples_of_cidr_map(load_policy: LoadPolicy) -> None:
    load_policy(
        """
        local cmap = kumo.cidr.make_map()
        cmap['127.0.0.1'] = 'bar'
        assert(cmap['127.0.0.1'] == 'bar')
        assert(cmap['not.set'] == nil)

        local cmap = kumo.cidr.make_map()
        cmap['10.0.0.0/24'] = '10. block'
        assert(cmap['10.0.0.1'] == '10. block')
        assert(cmap['10.0.0.42'] == '10. block')
        assert(cmap['100.0.0.100'] == nil)

        local cmap = kumo.cidr.make_map {
          ['127.0.0.0/24'] = 'loopback',
          ['10.0.0.0/24'] = 'lan',
        }
        cmap['4.2.4.2'] = 4242
        assert(cmap['4.2.4.2'] == 4242)

        local SOURCE_CLASSIFICATION = kumo.cidr.make_map {
          ['127.0.0.0/24'] = 'loopback',
          ['10.0.0.0/24'] = 'lan',
        }
        assert(SOURCE_CLASSIFICATION['127.0.0.1:25'] == 'loopback')
        assert(SOURCE_CLASSIFICATION['[127.0.0.1]'] == 'loopback')
        assert(SOURCE_CLASSIFICATION['[10.0.0.7]:2525'] == 'lan')
        """
    )


def test_cidr_map_the_latest_covering_insertion_wins() -> None:
    cmap = cidr.CidrMap()
    for key, value in [
        ("127.0.0.1", "loopbackv4"),
        ("::1", "loopbackv6"),
        ("192.168.1.0/24", ".1"),
        ("192.168.1.24", ".1"),
        ("192.168.3.0/28", ".3"),
        ("192.168.3.2", ".3.split"),
    ]:
        cmap.insert(cidr.parse_key(key), value)
    look = lambda key: cmap.get(cidr.parse_key(key))  # noqa: E731
    assert look("127.0.0.1") == "loopbackv4"
    assert look("127.0.0.2") is None
    assert look("::1") == "loopbackv6"
    assert look("[::1]:25") == "loopbackv6"
    assert look("192.168.1.100") == ".1"
    assert look("192.168.3.0") == ".3"
    assert look("192.168.3.16") is None
    assert look("192.168.3.2") == ".3.split"
    cmap.insert(cidr.parse_key("192.168.3.0/24"), "all")  # a wider network set later replaces
    assert look("192.168.3.2") == "all"


def test_seeded_overlaps_prefer_the_more_specific_network() -> None:
    cmap = cidr.make_map({"10.0.0.5": "host", "10.0.0.0/8": "net"})
    assert (cmap.get(cidr.parse_key("10.0.0.5")), cmap.get(cidr.parse_key("10.1.1.1"))) == (
        "host",
        "net",
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            "10.0.0.1/24",
            "10.0.0.1/24 is not a valid CIDR: host part of address was not zero. Did you mean 10.0.0.0/24?",
        ),
        ("10.0.0.0/255.255.255.0", "is not a valid CIDR"),
        ("fe80::1%eth0", "is not a valid CIDR"),
        ("[nope]:25", "failed to parse 'nope', the []-enclosed portion of '[nope]:25'"),
        ("host:25", "failed to parse 'host', the :-delimited portion of 'host:25'"),
    ],
)
def test_invalid_networks_are_refused(key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        cidr.parse_key(key)
    assert message in str(info.value)


def test_a_bad_key_names_the_policy_line(load_policy: LoadPolicy) -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy("local m = kumo.cidr.make_map()\nm['10.0.0.1/24'] = 1\n")
    assert "policy.lua:2: 10.0.0.1/24 is not a valid CIDR" in str(info.value)
    with pytest.raises(PolicyLoadError) as info:
        load_policy("-- x\nkumo.cidr.make_map { ['nope'] = 1 }\n")
    assert "policy.lua:2: kumo.cidr.make_map: nope is not a valid CIDR" in str(info.value)


def test_an_error_inside_indexing_names_the_policy_line(load_policy: LoadPolicy) -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy("local m = kumo.domain_map.new()\nlocal v = m[42]\n")
    assert "policy.lua:2: domain_map: key must be a string, got number" in str(info.value)
