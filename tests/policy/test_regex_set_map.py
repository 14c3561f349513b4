"""kumo.regex_set_map: unanchored search, nil on miss, deterministic choice, errors."""

from __future__ import annotations

import pytest

from kumoclient.errors import ConfigError, PolicyLoadError
from kumoclient.policy.regex_map import RegexSetMap
from tests.policy.conftest import LoadPolicy


def test_unanchored_search_finds_a_pattern_in_the_middle() -> None:
    rules = RegexSetMap({r"4\.2\.2 .*quota": 500})
    assert rules.lookup("452 4.2.2 The account is over quota. Try later") == 500


def test_miss_is_none() -> None:
    assert RegexSetMap({"abc": 1}).lookup("xyz") is None


def test_several_matches_pick_the_pattern_that_sorts_first() -> None:
    rules = {"quota": "q", "over": "o", "Over": "O", "4.2.2": "code"}
    subject = "452 4.2.2 Over quota, over limit"
    assert RegexSetMap(rules).lookup(subject) == "code"  # '4' < 'O' < 'o' < 'q'
    assert RegexSetMap({k: v for k, v in rules.items() if k != "4.2.2"}).lookup(subject) == "O"
    # insertion order does not matter
    assert RegexSetMap(dict(reversed(list(rules.items())))).lookup(subject) == "code"


def test_backreferences_are_refused_as_by_kumomtas_regexset() -> None:
    with pytest.raises(
        ConfigError,
        match=r"compiling rules: invalid pattern .* is not supported by the regex crate",
    ):
        RegexSetMap({r"(\w)\1": "double", "zzz": "z"})


@pytest.mark.parametrize(
    ("pattern", "subject", "hit"),
    [
        (r"quota$", "over quota\n", False),  # `$` is the very end, as in Rust
        (r"(?m)quota$", "over quota\nnext", True),
        (r"\p{Greek}", "550 αβ", True),
        (r"[[:digit:]&&[4-5]]\.\d", "x 5.1", True),
        (r"(?i)MAILBOX (full)", "Mailbox FULL", True),
        (r"(a(?i)b)c", "aBC", False),  # flags end with their group in the regex crate
        (r"\x{41}", "A", True),
    ],
)
def test_patterns_mean_what_they_mean_in_rust(pattern: str, subject: str, hit: bool) -> None:
    assert (RegexSetMap({pattern: 1}).lookup(subject) == 1) is hit


@pytest.mark.parametrize("pattern", [r"(?<=a)b", r"a++", r"(?>a)", r"a{x}", r"\K"])
def test_fancy_regex_only_syntax_is_refused(pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"not supported by the regex crate|invalid repetition"):
        RegexSetMap({pattern: 1})


def test_inline_flags_still_work() -> None:
    rules = RegexSetMap({"(?i)mailbox full": 1, "other": 2})
    assert rules.lookup("550 MAILBOX FULL") == 1


def test_invalid_pattern_names_it() -> None:
    with pytest.raises(ConfigError, match=r"compiling rules: invalid pattern '4\.2\.\(': "):
        RegexSetMap({"ok": 1, "4.2.(": 2})


def test_lua_map_index_and_nil(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local map = kumo.regex_set_map.new({['full'] = 500, ['busy'] = 'retry', ['^list$'] = {1, 2}})
        HIT, MISS, STR = map['mailbox full'], map['nothing here'], map['server busy']
        NUM = map[42]
        TBL = kumo.json_encode(map['list'])
        """
    )
    g = runtime._lua.globals()
    assert (g.HIT, g.MISS, g.STR, g.NUM, g.TBL) == (500, None, "retry", None, "[1,2]")


def test_lua_bad_pattern_is_a_load_error_naming_pattern_and_line(load_policy: LoadPolicy) -> None:
    with pytest.raises(
        PolicyLoadError, match=r"policy\.lua:2: compiling rules: invalid pattern '\[x'"
    ):
        load_policy("\nlocal m = kumo.regex_set_map.new({['[x'] = 1})\n")


def test_map_is_read_only(load_policy: LoadPolicy) -> None:
    with pytest.raises(PolicyLoadError, match="read-only"):
        load_policy("local m = kumo.regex_set_map.new({a = 1})\nm.b = 2\n")


def test_returnable_from_a_memoized_function(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        BUILDS = 0
        local get = kumo.memoize(function()
          BUILDS = BUILDS + 1
          return kumo.regex_set_map.new({['over quota'] = 500})
        end, {name = 'classifier', ttl = '5 minutes', capacity = 1})
        A = get()['452 4.2.2 over quota']
        B = get()['452 4.2.2 over quota']
        C = get()['fine']
        """
    )
    g = runtime._lua.globals()
    assert (g.A, g.B, g.C, g.BUILDS) == (500, 500, None, 1)


def test_patterns_run_on_re_only_where_re_means_the_same() -> None:
    """A translation marked portable finds the same as on the `regex` package, over the whole
    syntax table of kumo.regex (those patterns the regex crate takes)."""
    import re

    import regex

    from kumoclient.policy.modules.rust_regex import translate
    from tests.policy.test_mod_regex import SYNTAX

    checked = 0
    for pattern, haystack, _ in SYNTAX:
        try:
            translation = translate(pattern, fancy=False)
        except ConfigError:
            continue
        if not translation.portable:
            continue
        body = translation.pattern.removeprefix("(?-f)")
        on_re = re.search(body, haystack)
        on_regex = regex.search(translation.pattern, haystack, flags=regex.V1)
        assert (on_re and on_re.group(0)) == (on_regex and on_regex.group(0)), pattern
        checked += 1
    assert checked >= 30
    assert not translate(r"\w", fancy=False).portable
    assert not translate(r"\p{L}", fancy=False).portable
    assert not translate(r"[a-z--b]", fancy=False).portable
    assert translate(r"(?i)4\.2\.2 .*quota$", fancy=False).portable
