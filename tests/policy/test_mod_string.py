"""kumo.string.*: every reference example, Rust's splitting rules, Unicode whitespace, errors."""

from __future__ import annotations

import pytest

from kumoclient.errors import PolicyLoadError
from kumoclient.policy.modules import strings
from tests.policy.conftest import LoadPolicy


def test_reference_examples(load_policy: LoadPolicy) -> None:
    load_policy(
        r"""
        assert(kumo.string.ends_with('hello world', 'world'))
        assert(kumo.string.starts_with('hello world', 'hello'))
        assert(not kumo.string.starts_with('hello world', 'world'))
        assert(kumo.string.psl_domain 'www.example.com' == 'example.com')
        assert(kumo.string.psl_suffix 'www.example.com' == 'com')
        assert(kumo.string.replace('this is old', 'old', 'new') == 'this is new')
        assert(
          kumo.string.replacen('foo foo 123 foo', 'foo', 'new', 2)
            == 'new new 123 foo'
        )
        assert(
          kumo.json_encode(kumo.string.rsplit('Mary had a little lamb', ' '))
            == '["lamb","little","a","had","Mary"]'
        )
        assert(
          kumo.json_encode(kumo.string.rsplitn('Mary had a little lamb', 3, ' '))
            == '["lamb","little","Mary had a"]'
        )
        assert(
          kumo.json_encode(kumo.string.split('Mary had a little lamb', ' '))
            == '["Mary","had","a","little","lamb"]'
        )
        assert(
          kumo.json_encode(
            kumo.string.split_ascii_whitespace 'Mary had a little lamb'
          ) == '["Mary","had","a","little","lamb"]'
        )
        assert(
          kumo.json_encode(kumo.string.split_whitespace 'Mary had a little lamb')
            == '["Mary","had","a","little","lamb"]'
        )
        assert(
          kumo.json_encode(kumo.string.splitn('Mary had a little lamb', 3, ' '))
            == '["Mary","had","a little lamb"]'
        )
        assert(kumo.string.trim '\n Hello\tworld\t\n' == 'Hello\tworld')
        assert(kumo.string.trim_end '\n Hello\tworld\t\n' == '\n Hello\tworld')
        assert(kumo.string.trim_start '\n Hello\tworld\t\n' == 'Hello\tworld\t\n')
        """
    )


def test_reference_example_of_wrap(load_policy: LoadPolicy) -> None:
    load_policy(
        r"""
        assert(kumo.string.wrap 'hello' == 'hello')
        local long_string = string.rep('A', 200)
        local expect_wrapped = string.rep('A', 100) .. '\r\n\t' .. string.rep('A', 100)
        assert(kumo.string.wrap(long_string, 75, 100) == expect_wrapped)
        local long_string_spaced = string.rep('hello there ', 10)
        assert(
          kumo.string.wrap(long_string_spaced, 75, 100)
            == 'hello there hello there hello there hello there hello there hello there\r\n'
              .. '\thello there hello there hello there hello there'
        )
        """
    )


def test_reference_examples_of_eval_template(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        NAME = kumo.string.eval_template('example.json', [[{{name}}]], { name = 'John' })
        local log_record = kumo.serde.json_parse [=[
        { "type": "Delivery", "size": 1047, "feedback_report": null, "meta": {"a": 1} }
        ]=]
        LOG = kumo.string.eval_template(
          'log.json',
          [[{
        {%- for key, value in log_record | items | reject("none") -%}
        {{key}}: {{value }}
        {%- if not loop.last %},{% endif %}
        {%- endfor -%}
        }
        ]],
          { log_record = log_record }
        )
        HTML = kumo.string.eval_template('x.html', '<p>{{ v }}</p>', { v = '<b>' })
        PLAIN = kumo.string.eval_template('x.txt', '{{ v }}', { v = '<b>' })
        STATIC = kumo.string.eval_template('x.txt', '{{ v }}', { v = 1 }, 'Static')
        """
    )
    g = runtime._lua.globals()
    assert g.NAME == '"John"'
    assert g.LOG == '{"meta": {"a":1},"size": 1047,"type": "Delivery"}\n'
    assert (g.HTML, g.PLAIN, g.STATIC) == ("<p>&lt;b&gt;</p>", "<b>", "{{ v }}")


@pytest.mark.parametrize(
    ("fn", "call", "expected"),
    [
        (strings.split, ("abc", ""), ["", "a", "b", "c", ""]),
        (strings.split, ("a,b,,c,", ","), ["a", "b", "", "c", ""]),
        (strings.rsplit, ("aaa", "aa"), ["", "a"]),
        (strings.rsplit, ("abc", ""), ["", "c", "b", "a", ""]),
        (strings.splitn, ("a,b,c", 0, ","), []),
        (strings.splitn, ("a,b,c", 1, ","), ["a,b,c"]),
        (strings.splitn, ("abc", 2, ""), ["", "abc"]),
        (strings.rsplitn, ("a,b,c", 2, ","), ["c", "a,b"]),
        (strings.rsplitn, ("abc", 2, ""), ["", "abc"]),
        # U+001C is not White_Space (Python's str.split() would split on it); U+3000 is
        (strings.split_whitespace, ("a\x1cb\u3000c\u2028d",), ["a\x1cb", "c", "d"]),
        # vertical tab is not ASCII whitespace in Rust
        (strings.split_ascii_whitespace, ("a\x0bb c\x0cd",), ["a\x0bb", "c", "d"]),
        (strings.trim, ("\u3000\x1c x \xa0",), "\x1c x"),
        (strings.replace, ("abc", "", "-"), "-a-b-c-"),
        (strings.replacen, ("abc", "", "-", 2), "-a-bc"),
        (strings.starts_with, (b"\xff\x00x", b"\xff"), True),
        (strings.ends_with, ("x", "xx"), False),
        (strings.psl_domain, ("Foo.Example.CO.UK.",), "example.co.uk"),
        (strings.psl_domain, ("com",), None),
        (strings.psl_suffix, ("a.b.unknowntld",), "unknowntld"),
        (
            strings.wrap,
            ("hello world foo bar baz woot woot", 10, 15),
            b"hello\r\n\tworld foo\r\n\tbar baz\r\n\twoot woot",
        ),
        (
            strings.wrap,
            ("hi there breakmepleaseIamtoolong", 10, 15),
            b"hi there\r\n\tbreakmepleaseIa\r\n\tmtoolong",
        ),
        (strings.wrap, ("hello world ", 10, 15), b"hello\r\n\tworld"),
    ],
)
def test_string_functions_table(fn: object, call: tuple[object, ...], expected: object) -> None:
    assert fn(*call) == expected  # type: ignore[operator]


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            "kumo.string.split(1, ' ')",
            r"kumo\.string\.split: argument must be a string, got number",
        ),
        ("kumo.string.splitn('a', -1, ' ')", r"kumo\.string\.splitn: limit must be at least 0"),
        ("kumo.string.trim('\\xff')", r"kumo\.string\.trim: argument is not valid UTF-8 text"),
        ("kumo.string.eval_template('x', '{{', {})", r"kumo\.string\.eval_template: x:1: "),
        (
            "kumo.string.eval_template('x', 'a', {}, 'Handlebars')",
            r"dialect 'Handlebars' is not supported",
        ),
    ],
)
def test_errors_name_the_function_and_the_line(
    load_policy: LoadPolicy, code: str, message: str
) -> None:
    with pytest.raises(PolicyLoadError, match=message) as info:
        load_policy(f"-- line 1\n{code}\n")
    assert "policy.lua:2: " in str(info.value)
