"""kumo.regex: the reference examples through a policy, then table tests of the Rust syntax
(what each pattern matches in KumoMTA, from fancy-regex's and the regex crate's rules), Rust's
iteration and replacement rules, and the refusals."""

from __future__ import annotations

import pytest

from kumoclient.errors import ConfigError, PolicyLoadError
from kumoclient.policy.modules.regexes import Regex, escape
from tests.policy.conftest import LoadPolicy


def test_reference_examples(load_policy: LoadPolicy) -> None:
    load_policy(
        r"""
        local re = kumo.regex.compile "'([^']+)'\\s+\\((\\d{4})\\)"
        local cap = re:captures "Not my favorite movie: 'Citizen Kane' (1941)."
        assert(cap[0] == "'Citizen Kane' (1941)")
        assert(cap[1] == 'Citizen Kane')
        assert(cap[2] == '1941')

        local re = kumo.regex.compile "'(?<title>[^']+)'\\s+\\((?<year>\\d{4})\\)"
        local cap = re:captures "Not my favorite movie: 'Citizen Kane' (1941)."
        assert(cap[0] == "'Citizen Kane' (1941)")
        assert(cap.title == 'Citizen Kane')
        assert(cap.year == '1941')

        local re = kumo.regex.compile 'oo'
        assert(re:is_match 'foo')

        local re = kumo.regex.compile 'o+'
        assert(re:find 'food' == 'oo')
        assert(re:find 'fooood' == 'oooo')

        local re = kumo.regex.compile '\\b\\w{13}\\b'
        local res =
          re:find_all 'Retroactively relinquishing remunerations is reprehensible.'
        assert(
          kumo.json_encode(res)
            == '["Retroactively","relinquishing","remunerations","reprehensible"]'
        )

        local re = kumo.regex.compile '[^01]+'
        assert(re:replace('1078910', '') == '1010')

        local re = kumo.regex.compile '(?P<last>[^,\\s]+),\\s+(?P<first>\\S+)'
        assert(
          re:replace('Springsteen, Bruce', '$first $last') == 'Bruce Springsteen'
        )

        local re = kumo.regex.compile '[ \\t]+'
        local res = re:split 'a b \t  c\td    e'
        assert(kumo.json_encode(res) == '["a","b","c","d","e"]')
        """
    )


def test_replace_all_replacen_escape_and_misses(load_policy: LoadPolicy) -> None:
    load_policy(
        r"""
        local re = kumo.regex.compile '(\\d+)'
        assert(re:replace_all('a1 b22 c333', '<$1>') == 'a<1> b<22> c<333>')
        assert(re:replacen('a1 b22 c333', 2, '#') == 'a# b# c333')
        assert(re:replacen('a1 b22 c333', 0, '#') == 'a# b# c#')
        assert(re:captures 'none' == nil)
        assert(re:find 'none' == nil)
        assert(not re:is_match 'none')
        assert(kumo.regex.escape 'a.b*c' == 'a\\.b\\*c')
        local lit = kumo.regex.compile(kumo.regex.escape '1+1=2 (really?) [x] {y} $^|#&-~')
        assert(lit:is_match 'so 1+1=2 (really?) [x] {y} $^|#&-~ indeed')
        """
    )


# (pattern, haystack, what KumoMTA's find() answers: the first match or None)
SYNTAX = [
    # Unicode classes and Perl classes are Unicode
    (r"\p{Greek}+", "abc αβγ", "αβγ"),
    (r"\pL+", "123abc", "abc"),
    (r"\p{Lu}", "abC", "C"),
    (r"\P{L}+", "ab12cd", "12"),
    (r"\p{sc=Greek}", "aβ", "β"),
    (r"\p{Script_Extensions=Greek}", "a\u0342", "\u0342"),
    (r"\p{Greek}", "a\u0342", None),  # bare script names are Script, not extensions
    (r"\p{gc:Nd}+", "x٣٤", "٣٤"),
    (r"\p{sc!=Latin}", "ab3", "3"),
    (r"\p{Is Greek}", "β", "β"),  # loose names: spaces, case, 'is'
    (r"\p{sc}", "a$", "$"),  # 'sc' is the Currency_Symbol category in Rust
    (r"\d+", "x٣4", "٣4"),
    (r"\w+", "é_\u0301x!", "é_\u0301x"),
    (r"\s", "a\u3000b", "\u3000"),
    (r"\s", "a\x1cb", None),  # U+001C is not White_Space
    (r"\h+", "xyz0fAg", "0fA"),
    # anchors: $ is the very end unless (?m); \Z allows trailing newlines
    (r"a$", "a\n", None),
    (r"(?m)a$", "a\nb", "a"),
    (r"a\z", "a\n", None),
    (r"a\Z", "a\n\n", "a"),
    (r"(?m)^b", "a\nb", "b"),
    (r"^b", "a\nb", None),
    (r"\Aa", "ba", None),
    (r"\<b\w*\>", "ab bc", "bc"),
    (r"\bx", "é x", "x"),
    # dot, flags and their scope
    (r"a.c", "a\nc abc", "abc"),
    (r"(?s)a.c", "a\nc", "a\nc"),
    (r"\O", "\n", "\n"),
    (r"(?i)straße", "STRASSE", None),  # simple case folding, as Rust
    (r"(?i)k", "\u212a", "\u212a"),  # KELVIN SIGN folds to k
    (r"a(?i)b", "aB", "aB"),
    (r"(?i:a)b", "AB", None),
    (r"(?:(?i)a)b", "AB", None),  # a bare flag ends with its (?:...)
    (r"((?i)a)b", "AB", "AB"),  # ...but not with a capture group (fancy-regex)
    (r"(?U)a+", "aaa", "a"),
    (r"(?U)a+?", "aaa", "aaa"),
    ("(?x) a b  # comment\n c", "abc", "abc"),
    (r"(?x) a b  # a comment to the end, \n c", "abc", "ab"),
    (r"(?x)[ ]", "a b", " "),  # whitespace in a class stays in x mode (fancy-regex)
    (r"a(?#comment)b", "ab", "ab"),
    # classes
    (r"[[:alpha:]]+", "12abé", "ab"),  # ASCII only
    (r"[[:^digit:]]+", "12ab3", "ab"),
    (r"[a-z&&[^aeiou]]+", "aebcd", "bcd"),
    (r"[\w--\d]+", "12ab3", "ab"),
    (r"[a-c~~b-d]+", "bcad", "ad"),
    (r"[]a]+", "x]a]", "]a]"),
    (r"[^]a]+", "]ax", "x"),
    (r"[a-]+", "x-a-", "-a-"),
    (r"[\[\]]+", "x[]", "[]"),
    (r"[\b]", "a\x08", "\x08"),
    (r"[\A]", "xA", "A"),
    (r"(?i)[^a]", "A", None),
    (r"(?i)[a-c--b]+", "ABC", "A"),
    # escapes
    (r"\x41\u{42}\U00000043\x{44}", "ABCD", "ABCD"),
    (r"\e\a", "\x1b\x07", "\x1b\x07"),
    (r"\.\+\*\?\(\)\|\[\]\{\}\^\$\#\&\-\~", ".+*?()|[]{}^$#&-~", ".+*?()|[]{}^$#&-~"),
    (r"\ ", "a b", " "),
    # repetition, including what fancy-regex takes literally
    (r"a{2}", "aaa", "aa"),
    (r"a{2,}", "aaaa", "aaaa"),
    (r"a{,2}", "aaa", "aa"),
    (r"a{,}", "aaa", "aaa"),
    (r"a{x}", "a{x}", "a{x}"),
    (r"a{2}{3}", "aa{3}", "aa{3}"),
    (r"a{", "a{", "a{"),
    (r"x*+x", "xxx", None),  # possessive
    (r"(?>a|ab)c", "abc", None),  # atomic
    (r"a+?", "aaa", "a"),
    # groups, back-references, look-around, conditionals, \K
    (r"(\w)\1", "abccd", "cc"),
    (r"(?<ch>\w)\k<ch>", "abccd", "cc"),
    (r"(?'ch'\w)\k'ch'", "xyy", "yy"),
    (r"(?P<ch>\w)(?P=ch)", "xyy", "yy"),
    (r"(a)(b)\k<-1>", "abb", "abb"),
    (r"(?i)(a)\1", "aA", "aA"),
    (r"(?<=\$)\d+", "cost $42", "42"),
    (r"(?<!\$)\b\d+", "$4 5", "5"),
    (r"\w+(?=!)", "hi there!", "there"),
    (r"\w+(?!\w|!)", "ab! cd", "cd"),
    (r"(a)?(?(1)b|c)", "xc", "c"),
    (r"(a)?(?(1)b|c)", "ab", "ab"),
    (r"(?<n>a)?(?(<n>)b|c)", "ab", "ab"),
    (r"@\K\w+", "me@host", "host"),
    (r"(?<1a>x)", "x", "x"),  # fancy-regex names may start with a digit
]


@pytest.mark.parametrize(("pattern", "haystack", "expected"), SYNTAX)
def test_rust_syntax_means_the_same(pattern: str, haystack: str, expected: str | None) -> None:
    assert Regex(pattern).find(haystack) == expected


# patterns fancy-regex (KumoMTA) refuses, and the few whose meaning would differ here
REFUSED = [
    (r"(?-u)\w", "Unicode mode cannot be turned off"),
    (r"(?R)a", "unknown flag 'R'"),
    (r"(?q)a", "unknown flag 'q'"),
    (r"(?)a", "unknown flag ')'"),
    (r"\q", r"invalid escape \q"),
    (r"\N", r"invalid escape \N"),
    (r"\R", r"invalid escape \R"),
    (r"\Q.\E", r"invalid escape \Q"),
    (r"[\O]", r"invalid escape \O"),
    (r"\b{start}", r"\b{...} is not supported"),
    (r"\p{Age=3.0}", "has no Unicode age classes here"),
    (r"\p{Bogus_Property=x}", "is not supported"),
    (r"\g<1>(a)", "subroutine calls"),
    (r"(?(?=a)a|b)", "only group conditions"),
    (r"(?<=a+)b", "look-behind assertion without constant size"),
    (r"(?<=ab|c)d", "look-behind assertion without constant size"),
    (r"(a)\2", "invalid back-reference to group 2"),
    (r"\k<nope>", "unknown group name 'nope'"),
    (r"(?<n>a)\1", "numbered back-references cannot be used with named groups"),
    (r"a{3,2}", "invalid repetition range"),
    (r"*a", "unexpected character"),
    (r"a)", "unmatched ')'"),
    (r"(a", "unclosed group"),
    (r"[a", "unclosed character class"),
    (r"[z-a]", "invalid character class range"),
    (r"^*", "not repeatable"),
    (r"\x{110000}", "invalid code point"),
    (r"\xZZ", "invalid hex escape"),
    ("a\\", "ends with a backslash"),
]


@pytest.mark.parametrize(("pattern", "message"), REFUSED)
def test_refused_patterns_say_why(pattern: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"kumo\.regex\.compile: regex parse error") as info:
        Regex(pattern)
    assert message in str(info.value)


def test_a_bad_pattern_names_the_policy_line(load_policy: LoadPolicy) -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy("-- x\nlocal re = kumo.regex.compile '(?<=a+)b'\n")
    assert "policy.lua:2: kumo.regex.compile: regex parse error at" in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "haystack", "expected"),
    [
        ("a*", "baaa", ["", "aaa"]),  # no empty match right after "aaa" (Python gives a third)
        ("", "ab", ["", "", ""]),
        (r"\b", "ab cd", ["", "", "", ""]),
        ("x*", "xax", ["x", "x"]),
    ],
)
def test_find_all_skips_an_empty_match_after_a_match(
    pattern: str, haystack: str, expected: list[str]
) -> None:
    assert Regex(pattern).find_all(haystack) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("[$1]", "[b]"),
        ("[${1}x]", "[bx]"),
        ("[$1x]", "[]"),  # the longest name: '1x' is no group
        ("[$name]", "[b]"),
        ("[${name}]", "[b]"),
        ("[$$1]", "[$1]"),
        ("[$]", "[$]"),
        ("[${a-b}]", "[${a-b}]"),
        ("[$0]", "[ab]"),
        ("[$2]", "[]"),  # a group that did not take part
        ("[$9]", "[]"),  # no such group
    ],
)
def test_replacement_syntax_is_rusts(template: str, expected: str) -> None:
    assert Regex(r"a(?<name>b)(c)?").replace("ab", template) == expected


def test_split_and_replace_follow_rusts_matches() -> None:
    assert Regex("a*").replace_all("baaac", "-") == "-b-c-"
    assert Regex(",").split(",a,,b,") == ["", "a", "", "b", ""]
    assert Regex("x").split("") == [""]
    assert escape("*.example.com") == r"\*\.example\.com"
