"""`kumo.regex_set_map`: the value of the first pattern (by code point order) found in a subject.

Rules (SPEC 4.3):
- a pattern matches when it is found anywhere in the subject (unanchored search);
- when several patterns match, the one that sorts first wins (deterministic);
- a miss is None (nil in Lua);
- an invalid pattern fails the whole map with `compiling rules: ...` naming the pattern.
Patterns are Rust `regex` crate syntax, as KumoMTA's RegexSet takes them, translated by
modules/rust_regex.py (`fancy=False`: no look-around or back-references, which RegexSet
refuses too) and run on the `regex` package; see docs/policy.md.

Speed: besides each compiled pattern, one alternation of all patterns answers "does anything
match?" in a single search, so a miss costs one pass over the subject instead of one search
per pattern (the translated patterns have no back-references and scope every flag, so joining
them changes no meaning). A translation that means the same to Python's `re` (most DSN rules:
no \\w \\s \\b \\p or set operations) runs on `re`, whose searches cost a third of the
`regex` package's (bench/policy_hook.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import regex

from kumoclient.errors import ConfigError
from kumoclient.policy.modules.rust_regex import translate

_PREFIX = "(?-f)"  # simple case folding, as Rust's (translate puts it first)


class RegexSetMap:
    """An immutable pattern → value map searched by subject."""

    __slots__ = ("_any", "_patterns", "_rules")

    def __init__(self, rules: Mapping[str, object]) -> None:
        compiled: list[tuple[re.Pattern[str] | regex.Pattern[str], object]] = []
        bodies: list[str] = []
        portable = True
        for pattern in sorted(rules):
            if not isinstance(pattern, str):
                raise ConfigError(
                    f"compiling rules: pattern {pattern!r} is not a string", value=pattern
                )
            try:
                translation = translate(pattern, fancy=False)
                body = translation.pattern.removeprefix(_PREFIX)
                compiled.append((_compile(body, translation.portable), rules[pattern]))
            except (ConfigError, re.error, regex.error, OverflowError, RecursionError) as exc:
                raise ConfigError(
                    f"compiling rules: invalid pattern {pattern!r}: {exc}", key=pattern
                ) from exc
            bodies.append(body)
            portable &= translation.portable
        self._rules = tuple(compiled)
        self._patterns = tuple(sorted(rules))
        self._any = _compile("|".join(f"(?:{b})" for b in bodies), portable)

    def __len__(self) -> int:
        return len(self._rules)

    @property
    def patterns(self) -> tuple[str, ...]:
        """The patterns (as written) in the order they are tried."""
        return self._patterns

    def lookup(self, subject: str) -> object:
        """The value of the first-sorted pattern found in `subject`, or None."""
        if len(self._rules) > 1 and self._any.search(subject) is None:
            return None
        for pattern, value in self._rules:
            if pattern.search(subject) is not None:
                return value
        return None


def _compile(body: str, portable: bool) -> re.Pattern[str] | regex.Pattern[str]:
    if portable:
        return re.compile(body)
    return regex.compile(_PREFIX + body, regex.V1)
