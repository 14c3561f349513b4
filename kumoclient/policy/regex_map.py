"""`kumo.regex_set_map`: the value of the first pattern (by code point order) found in a subject.

Rules (SPEC 4.3):
- a pattern matches when it is found anywhere in the subject (unanchored search);
- when several patterns match, the one that sorts first wins (deterministic);
- a miss is None (nil in Lua);
- an invalid pattern fails the whole map with `compiling rules: ...` naming the pattern.
Patterns use Python's `re` syntax, which agrees with KumoMTA's Rust regex syntax for the usual
DSN patterns (escapes, classes, `.+`, alternation); see docs/policy.md for the differences.

Speed: besides each compiled pattern, one alternation of all patterns answers "does anything
match?" in a single search, so a miss costs one pass over the subject instead of one search
per pattern. The alternation is skipped when a pattern refers to its own groups by number
(backreferences, conditionals) because joining patterns renumbers groups.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from kumoclient.errors import ConfigError

_GROUP_REFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")


class RegexSetMap:
    """An immutable pattern → value map searched by subject."""

    __slots__ = ("_any", "_rules")

    def __init__(self, rules: Mapping[str, object]) -> None:
        compiled: list[tuple[re.Pattern[str], object]] = []
        for pattern in sorted(rules):
            if not isinstance(pattern, str):
                raise ConfigError(
                    f"compiling rules: pattern {pattern!r} is not a string", value=pattern
                )
            try:
                compiled.append((re.compile(pattern), rules[pattern]))
            except re.error as exc:
                raise ConfigError(
                    f"compiling rules: invalid pattern {pattern!r}: {exc}", key=pattern
                ) from exc
        self._rules = tuple(compiled)
        self._any = _alternation([p.pattern for p, _ in compiled])

    def __len__(self) -> int:
        return len(self._rules)

    @property
    def patterns(self) -> tuple[str, ...]:
        """The patterns in the order they are tried."""
        return tuple(p.pattern for p, _ in self._rules)

    def lookup(self, subject: str) -> object:
        """The value of the first-sorted pattern found in `subject`, or None."""
        if self._any is not None and self._any.search(subject) is None:
            return None
        for pattern, value in self._rules:
            if pattern.search(subject) is not None:
                return value
        return None


def _alternation(patterns: list[str]) -> re.Pattern[str] | None:
    if len(patterns) < 2 or any(_GROUP_REFERENCE.search(p) for p in patterns):
        return None
    try:
        return re.compile("|".join(f"(?:{p})" for p in patterns))
    except re.error:  # e.g. inline global flags, legal alone but not inside a group
        return None
