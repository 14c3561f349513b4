"""`kumo.regex.compile` / `kumo.regex.escape` and the Regex object: KumoMTA's Rust patterns
(translated by rust_regex.py) run on the `regex` package, with Rust's iteration over matches
(an empty match right after a match is skipped) and Rust's `$name` replacement syntax."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import regex

from kumoclient.errors import ConfigError
from kumoclient.policy.api import LuaObject, kumo_function
from kumoclient.policy.modules import args
from kumoclient.policy.modules.rust_regex import escape as rust_escape
from kumoclient.policy.modules.rust_regex import translate

# Rust's regex engine runs in linear time; this one backtracks. A search that takes longer than
# this is stopped with an error (fancy-regex stops runaway backtracking with an error too).
MATCH_TIMEOUT = 1.0


def compile_rust(pattern: str, what: str) -> tuple[regex.Pattern[str], dict[str, int]]:
    """The compiled pattern and its group names, or a ConfigError naming `what`."""
    try:
        translation = translate(pattern)
        return regex.compile(translation.pattern, regex.V1), translation.names
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}", value=pattern) from exc
    except (regex.error, OverflowError, RecursionError) as exc:
        raise ConfigError(f"{what}: regex parse error: {exc}", value=pattern) from exc


class Regex(LuaObject):
    """A compiled pattern: `captures`, `is_match`, `find`, `find_all`, `replace`,
    `replace_all`, `replacen`, `split`."""

    lua_name: ClassVar[str] = "Regex"
    lua_methods: ClassVar[frozenset[str]] = frozenset(
        {"captures", "is_match", "find", "find_all", "replace", "replace_all", "replacen", "split"}
    )

    def __init__(self, source: str) -> None:
        self.source = source
        self.pattern, self.names = compile_rust(source, "kumo.regex.compile")

    def lua_tostring(self) -> str:
        return self.source

    def _search(self, text: str, pos: int = 0) -> regex.Match[str] | None:
        try:
            return self.pattern.search(text, pos, timeout=MATCH_TIMEOUT)
        except TimeoutError as exc:
            raise ConfigError(
                f"regex {self.source!r}: matching took more than {MATCH_TIMEOUT:g}s "
                "(runaway backtracking)"
            ) from exc

    def matches(self, text: str) -> Iterator[regex.Match[str]]:
        """Successive non-overlapping matches; an empty match at the end of the previous match
        is skipped, as in Rust."""
        last_end, last_match = 0, -1
        while last_end <= len(text):
            found = self._search(text, last_end)
            if found is None:
                return
            start, end = found.span()
            if start == end:
                last_end = end + 1
                if end == last_match:
                    continue
            else:
                last_end = end
            last_match = end
            yield found

    def captures(self, haystack: Any) -> dict[Any, str] | None:
        """The first match: index 0 the whole match, then each group that took part, by number
        and (for named groups) by name."""
        found = self._search(args.text("Regex:captures", haystack))
        if found is None:
            return None
        table: dict[Any, str] = {}
        for index in range(self.pattern.groups + 1):
            value = found.group(index)
            if value is not None:
                table[index] = value
        for name, index in self.names.items():
            if index in table:
                table[name] = table[index]
        return table

    def is_match(self, haystack: Any) -> bool:
        return self._search(args.text("Regex:is_match", haystack)) is not None

    def find(self, haystack: Any) -> str | None:
        found = self._search(args.text("Regex:find", haystack))
        return None if found is None else found.group(0)

    def find_all(self, haystack: Any) -> list[str]:
        return [m.group(0) for m in self.matches(args.text("Regex:find_all", haystack))]

    def replace(self, text: Any, replacement: Any) -> str:
        """The first match replaced; `$1`, `$name`, `${name}` expand, `$$` is a `$`."""
        return self._replace("Regex:replace", text, 1, replacement)

    def replace_all(self, text: Any, replacement: Any) -> str:
        return self._replace("Regex:replace_all", text, 0, replacement)

    def replacen(self, text: Any, limit: Any, replacement: Any) -> str:
        """At most `limit` matches replaced; 0 means all of them."""
        count = args.integer("Regex:replacen", limit, name="limit", minimum=0)
        return self._replace("Regex:replacen", text, count, replacement)

    def _replace(self, what: str, text: Any, limit: int, replacement: Any) -> str:
        subject = args.text(what, text)
        template = args.text(what, replacement, name="replacement")
        pieces: list[str] = []
        last = 0
        for number, found in enumerate(self.matches(subject)):
            if limit and number >= limit:
                break
            pieces.append(subject[last : found.start()])
            pieces.append(expand(template, found, self.names))
            last = found.end()
        pieces.append(subject[last:])
        return "".join(pieces)

    def split(self, text: Any) -> list[str]:
        """The text between matches (an empty piece where two matches touch)."""
        subject = args.text("Regex:split", text)
        pieces, last = [], 0
        for found in self.matches(subject):
            pieces.append(subject[last : found.start()])
            last = found.end()
        pieces.append(subject[last:])
        return pieces


def _name_length(text: str, start: int) -> int:
    end = start
    while end < len(text) and (text[end].isalnum() or text[end] == "_"):
        end += 1
    return end - start


def expand(template: str, found: regex.Match[str], names: dict[str, int]) -> str:
    """Rust's replacement syntax: `$$`; `${name}`; `$name` (the longest run of letters, digits
    and `_`); a name that is not a group, or a group that did not take part, is empty; a `$`
    followed by nothing of that is a `$`."""
    if "$" not in template:
        return template
    out: list[str] = []
    i = 0
    while i < len(template):
        c = template[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        if template.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        length = _name_length(template, i + 2) if template.startswith("${", i) else 0
        if length and template.startswith("}", i + 2 + length):
            name, i = template[i + 2 : i + 2 + length], i + 3 + length
        elif (length := _name_length(template, i + 1)) > 0:
            name, i = template[i + 1 : i + 1 + length], i + 1 + length
        else:
            out.append("$")
            i += 1
            continue
        out.append(_group(found, names, name))
    return "".join(out)


def _group(found: regex.Match[str], names: dict[str, int], name: str) -> str:
    index = names.get(name)
    if index is None and name.isdigit():
        index = int(name)
    if index is None or index > (found.re.groups or 0):
        return ""
    return found.group(index) or ""


@kumo_function("regex.compile")
def compile_pattern(pattern: Any) -> Regex:
    """`kumo.regex.compile(PATTERN)`: a Regex, or an error explaining the pattern's fault."""
    return Regex(args.text("kumo.regex.compile", pattern, name="pattern"))


@kumo_function("regex.escape")
def escape(text: Any) -> str:
    """`kumo.regex.escape(TEXT)`: TEXT with every regex meta character backslashed."""
    return rust_escape(args.text("kumo.regex.escape", text))
