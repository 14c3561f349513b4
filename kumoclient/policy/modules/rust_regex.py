"""Rust regex syntax (KumoMTA's `fancy-regex` 0.16 over the `regex` crate) translated into a
pattern for Python's `regex` package that matches the same strings.

The parser follows fancy-regex's grammar: flags `i m s U x` (scoped by `(?flags:...)`; a bare
`(?flags)` lasts to the end of the enclosing `(?:...)`, as there), `.` without newline, `^`/`$`
at the text's ends unless `m`, `\\A \\z \\Z \\b \\B \\< \\>`, `\\d \\s \\w` (Unicode), `\\h`,
`\\p{..}`, hex escapes, classes with nested sets, ranges, `&&` `--` `~~` and `[:ascii:]` names,
`(?<name>..)` `(?P<name>..)` `(?'name'..)` groups, look-around (look-behind of constant width),
atomic groups, possessive and lazy quantifiers, `{,n}`, back-references (`\\1`, `\\k<name>`,
`\\k<-1>`, `(?P=name)`), `(?(1)yes|no)`, `\\K`, `\\G`, `\\O` and `(?#comments)`. Everything is
emitted explicitly (every literal escaped, every flag scoped) so that no default of the Python
engine decides a meaning. What fancy-regex refuses is refused here, with the reason; so are
the few things whose meaning would differ (`\\p{Age=..}`, expression conditions)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kumoclient.errors import ConfigError
from kumoclient.policy.modules.rust_regex_lexer import References, char

_WORD_START, _WORD_END = r"(?:(?<!\w)(?=\w))", r"(?:(?<=\w)(?!\w))"


@dataclass
class Translation:
    """The Python pattern, the number of capture groups, the group names (name → index;
    a repeated name means its last group, as in fancy-regex), and whether the pattern without
    its `(?-f)` prefix means the same to Python's `re` (no \\w \\s \\b \\p, sets, look-around,
    back-references: the constructs where `re` and `regex` differ)."""

    pattern: str
    groups: int
    names: dict[str, int] = field(default_factory=dict)
    portable: bool = False


def escape(text: str) -> str:
    """Rust's `regex::escape`: a backslash before each meta character."""
    return re.sub(r"([\\.+*?()|\[\]{}^$#&\-~])", r"\\\1", text)


class _Parser(References):
    """The structure of the grammar: alternation, pieces, atoms, groups."""

    # --- structure ---------------------------------------------------------------------------

    def alternation(self) -> tuple[str, int | None]:
        branches = self.alternatives()
        widths = {w for _, w in branches}
        width = widths.pop() if len(widths) == 1 else None
        return "|".join(text for text, _ in branches), width

    def alternatives(self) -> list[tuple[str, int | None]]:
        branches = [self.branch()]
        self.skip_space()
        while self.peek("|"):
            self.i += 1
            branches.append(self.branch())
            self.skip_space()
        if len(branches) == 1 and self.numeric_backrefs and self.names:
            raise self.fail("numbered back-references cannot be used with named groups")
        return branches

    def branch(self) -> tuple[str, int | None]:
        parts: list[str] = []
        width: int | None = 0
        while True:
            start = self.i
            piece = self.piece()
            if piece is None or self.i == start:
                return "".join(parts), width
            parts.append(piece[0])
            width = None if width is None or piece[1] is None else width + piece[1]

    def piece(self) -> tuple[str, int | None] | None:
        atom = self.atom()
        if atom is None:
            return None
        text, width, repeatable = atom
        self.skip_space()
        bounds = self.quantifier()
        if bounds is None:
            return text, width
        if not repeatable:
            raise self.fail("target of repeat operator is not repeatable")
        lo, hi = bounds
        self.skip_space()
        lazy = self.peek("?")
        self.i += lazy
        possessive = self.peek("+")
        self.i += possessive
        if possessive:
            self.fancy_only("a possessive quantifier")
            self.portable = False
        suffix = "?" if lazy != self.flags["U"] else ""  # `U` swaps greedy and lazy
        count = {(0, 1): "?", (0, None): "*", (1, None): "+"}.get((lo, hi))
        count = count or (f"{{{lo}}}" if lo == hi else f"{{{lo},{'' if hi is None else hi}}}")
        emitted = f"(?:{text}){count}{suffix}"
        if possessive:
            emitted = f"(?>{emitted})"
        exact = width is not None and (lo == hi or width == 0)
        return emitted, (width * lo if exact and width is not None else None)

    def quantifier(self) -> tuple[int, int | None] | None:
        if self.i >= len(self.p):
            return None
        c = self.p[self.i]
        if c in "?*+":
            self.i += 1
            return {"?": (0, 1), "*": (0, None), "+": (1, None)}[c]
        if c != "{":
            return None
        match = re.compile(r"\{\s*(\d*)\s*(?:(,)\s*(\d*)\s*)?\}" if self.flags["x"] else
                           r"\{(\d*)(?:(,)(\d*))?\}").match(self.p, self.i)  # fmt: skip
        if match is None or (not match[1] and not match[2]):
            if not self.fancy:
                raise self.fail("invalid repetition")
            return None  # not a repetition: `{` is a literal, as in fancy-regex
        lo = int(match[1] or 0)
        hi = int(match[3]) if match[3] else (None if match[2] else lo)
        if hi is not None and hi < lo:
            raise self.fail(f"invalid repetition range {{{lo},{hi}}}")
        self.i = match.end()
        return lo, hi

    # --- atoms -------------------------------------------------------------------------------

    def atom(self) -> tuple[str, int | None, bool] | None:
        self.skip_space()
        if self.i >= len(self.p) or self.p[self.i] in "+*?|)":
            return None
        c = self.p[self.i]
        self.i += 1
        if c == ".":
            return ("(?s:.)" if self.flags["s"] else "[^\\n]"), 1, True
        if c == "^":
            return ("(?<![^\\n])" if self.flags["m"] else "\\A"), 0, False
        if c == "$":
            return ("(?![^\\n])" if self.flags["m"] else "\\Z"), 0, False
        if c == "(":
            return self.group()
        if c == "[":
            return self.cased(self.bracket()), 1, True
        if c == "\\":
            return self.escape_atom()
        return self.cased(char(c)), 1, True

    def escape_atom(self) -> tuple[str, int | None, bool]:
        if self.i >= len(self.p):
            raise self.fail("pattern ends with a backslash")
        c = self.p[self.i]
        if c.isdigit() or c in "ZKGOk":
            self.fancy_only(f"\\{c}")
        if c.isdigit():
            return self.numbered_backref()
        self.i += 1
        assertions = {"A": "\\A", "z": "\\Z", "Z": "(?=\\n*\\Z)", "<": _WORD_START,
                      ">": _WORD_END, "K": "\\K", "G": "\\G"}  # fmt: skip
        if c in assertions:
            self.portable &= c in "AzZ"
            return assertions[c], 0, False
        if c in "bB":
            self.portable = False
            if self.peek("{"):
                raise self.fail(f"\\{c}{{...}} is not supported")
            return f"\\{c}", 0, False
        if c == "k":
            return self.named_backref(("'", "'") if self.peek("'") else ("<", ">"))
        if c == "O":
            return "(?s:.)", 1, True
        if c == "g":
            raise self.fail("subroutine calls (\\g) are not supported")
        return self.cased(self.class_escape(c)), 1, True

    # --- groups ------------------------------------------------------------------------------

    def group(self) -> tuple[str, int | None, bool]:
        self.skip_space()
        for opener, emitted in (("?=", "(?="), ("?!", "(?!"), ("?<=", "(?<="), ("?<!", "(?<!")):
            if self.peek(opener):
                self.fancy_only("look-around")
                self.portable = False
                self.i += len(opener)
                text, width = self.group_body()
                if "<" in opener and width is None:
                    raise self.fail("look-behind assertion without constant size")
                return f"{emitted}{text})", 0, False
        named = re.compile(r"\?(?:P?<(\w+)>|'(\w+)')").match(self.p, self.i)
        if named is not None or not self.peek("?"):
            self.i = named.end() if named is not None else self.i
            self.groups += 1
            index = self.groups
            if named is not None:
                self.names[named[1] or named[2]] = index
            saved = dict(self.flags)
            text, width = self.group_body()
            if not self.fancy:  # the regex crate scopes flags to every group
                self.flags = saved
            self.widths[index] = width
            return f"({text})", width, True
        if self.p.startswith(("?P=", "?>", "?("), self.i):
            self.fancy_only(f"({self.p[self.i : self.i + 3]}")
            self.portable = False
        if self.peek("?P="):
            end = self.p.find(")", self.i)
            if end < 0:
                raise self.fail("unclosed (?P=name)")
            name, self.i = self.p[self.i + 3 : end], end + 1
            return self.backref(self.resolve(name, None))
        if self.peek("?>"):
            self.i += 2
            text, width = self.group_body()
            return f"(?>{text})", width, True
        if self.peek("?("):
            return self.conditional()
        return self.flag_group()

    def group_body(self) -> tuple[str, int | None]:
        body = self.alternation()
        self.skip_space()
        if not self.peek(")"):
            raise self.fail("unclosed group")
        self.i += 1
        return body

    def conditional(self) -> tuple[str, int | None, bool]:
        match = re.compile(r"\?\((?:<(\w+)>|'(\w+)'|([+-]?\d+))\)").match(self.p, self.i)
        if match is None:
            raise self.fail("only group conditions (?(1)..), (?(<name>)..) are supported")
        self.i = match.end()
        number = match[3]
        if number is not None and number[0] in "+-":
            group = self.resolve("", number)
        else:
            group = self.resolve(match[1] or match[2] or "", None) if not number else int(number)
        self.backrefs.append(group)
        branches = self.alternatives()
        self.skip_space()
        if not self.peek(")"):
            raise self.fail("unclosed group")
        self.i += 1
        if len(branches) == 1 and not branches[0][0]:
            return f"(?({group})|(?!))", 0, False  # only "has group N matched?"
        yes, no = branches[0][0], "|".join(text for text, _ in branches[1:])
        return f"(?({group})(?:{yes})|(?:{no}))", None, True

    def flag_group(self) -> tuple[str, int | None, bool]:
        saved = dict(self.flags)
        self.i += 1
        negate, seen = False, False
        while True:
            self.skip_space()
            if self.i >= len(self.p):
                raise self.fail("unclosed group")
            c = self.p[self.i]
            self.i += 1
            if c in self.flags:
                self.flags[c], seen = not negate, True
            elif c == "u" and not negate:
                seen = True
            elif c == "-" and not negate:
                negate = True
            elif c == ")" and seen:
                return "", 0, False  # lasts to the end of the enclosing (?:...)
            elif c == ":" and (seen or not negate):
                text, width = self.group_body()
                self.flags = saved
                return f"(?:{text})", width, True
            else:
                what = "Unicode mode cannot be turned off" if c == "u" else f"unknown flag {c!r}"
                raise self.fail(what)


def translate(pattern: str, *, fancy: bool = True) -> Translation:
    """The Python `regex` (V1) pattern meaning what `pattern` means to KumoMTA, or a
    ConfigError saying why it cannot be used. `fancy=False` is the plain `regex` crate of
    KumoMTA's regex_set_map (RegexSet): no look-around, back-references, atomic groups,
    possessive quantifiers, conditionals, `\\K \\G \\Z \\O \\h`; flags end with every group;
    a `{` that is not a repetition is an error."""
    parser = _Parser(pattern)
    parser.fancy = fancy
    text, _ = parser.alternation()
    if parser.i < len(pattern):
        raise parser.fail("unmatched ')'" if pattern[parser.i] == ")" else "unexpected character")
    for group in parser.backrefs:
        if group > parser.groups:
            raise ConfigError(f"regex parse error: invalid back-reference to group {group}")
    return Translation(f"(?-f){text}", parser.groups, dict(parser.names), parser.portable)
