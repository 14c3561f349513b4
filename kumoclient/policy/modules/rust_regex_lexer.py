"""The lexical half of the Rust regex translation (see rust_regex.py): the cursor over the
pattern, escapes, `\\p{..}` Unicode classes and bracketed classes with their set operations,
and back-references, each emitted for the `regex` package's V1 syntax."""

from __future__ import annotations

import re

from kumoclient.errors import ConfigError

_ASCII_CLASSES = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7F", "blank": "\\t ",
    "cntrl": "\\x00-\\x1F\\x7F", "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~",
    "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\x0B\\f\\r ", "upper": "A-Z",
    "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}  # fmt: skip
_SIMPLE_ESCAPES = {"a": "\x07", "f": "\x0c", "n": "\n", "r": "\r", "t": "\t", "v": "\x0b"}
_SIMPLE_ESCAPES["e"] = "\x1b"
_KEPT_IN_CLASS = set("kAzbB<>KG")  # letters fancy-regex takes literally inside a class
_VALUE_PROPERTIES = {
    "gc": "gc", "generalcategory": "gc", "sc": "sc", "script": "sc", "scx": "scx",
    "scriptextensions": "scx", "gcb": "gcb", "graphemeclusterbreak": "gcb", "wb": "wb",
    "wordbreak": "wb", "sb": "sb", "sentencebreak": "sb",
}  # fmt: skip


def char(c: str) -> str:
    """A literal character, escaped for the Python engine (inside or outside a set)."""
    if c.isascii() and (c.isalnum() or c == "_"):
        return c
    code = ord(c)
    return f"\\x{code:02x}" if code < 0x100 else f"\\U{code:08x}"


class Cursor:
    """The pattern, the position, the flags in force and the group bookkeeping; the lexical
    parts of the grammar (escapes, Unicode classes, bracketed classes)."""

    def __init__(self, pattern: str) -> None:
        self.p, self.i = pattern, 0
        self.flags = {"i": False, "m": False, "s": False, "U": False, "x": False}
        self.groups, self.names = 0, dict[str, int]()
        self.widths: dict[int, int | None] = {}
        self.backrefs: list[int] = []
        self.numeric_backrefs = False
        self.fancy = True  # fancy-regex's grammar (kumo.regex); False: the regex crate's
        # True while the translation means the same to Python's `re` (faster per search)
        self.portable = True

    def fancy_only(self, what: str) -> None:
        """Refuse `what` outside fancy-regex's grammar (kumo.regex_set_map's RegexSet)."""
        if not self.fancy:
            raise self.fail(f"{what} is not supported by the regex crate (no fancy-regex here)")

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"regex parse error at {self.i}: {message}")

    def peek(self, text: str) -> bool:
        return self.p.startswith(text, self.i)

    def skip_space(self) -> None:
        """`(?#...)` comments anywhere; whitespace and `#` comments in `x` mode."""
        while self.i < len(self.p):
            c = self.p[self.i]
            if self.flags["x"] and c in " \r\n\t":
                self.i += 1
            elif self.flags["x"] and c == "#":
                end = self.p.find("\n", self.i)
                self.i = len(self.p) if end < 0 else end + 1
            elif self.peek("(?#"):
                self.i += 3
                while self.i < len(self.p) and self.p[self.i] != ")":
                    self.i += 2 if self.p[self.i] == "\\" else 1
                if self.i >= len(self.p):
                    raise self.fail("unclosed comment")
                self.i += 1
            else:
                return

    def class_escape(self, c: str, *, in_class: bool = False) -> str:
        """The escape `\\c` (the backslash and `c` consumed) as a set item or literal."""
        if c in "dDsSwW":
            self.portable &= c in "dD"  # Python's re has other \w and \s
            return f"\\{c}"
        if c in "hH":
            self.fancy_only(f"\\{c}")
            return "[0-9A-Fa-f]" if c == "h" else "[^0-9A-Fa-f]"
        if c in "xuU":
            return char(self.hex_escape({"x": 2, "u": 4, "U": 8}[c]))
        if c in "pP":
            return self.property(negated=c == "P")
        if c in _SIMPLE_ESCAPES:
            return char(_SIMPLE_ESCAPES[c])
        if in_class and c == "b":
            return char("\x08")
        if c.isascii() and c.isalpha() and not (in_class and c in _KEPT_IN_CLASS):
            raise self.fail(f"invalid escape \\{c}")
        return char(c)

    def hex_escape(self, digits: int) -> str:
        match = re.compile(f"[0-9a-fA-F]{{{digits}}}|\\{{([0-9a-fA-F]{{1,8}})\\}}").match(
            self.p, self.i
        )
        if match is None:
            raise self.fail("invalid hex escape")
        self.i = match.end()
        value = int(match[1] or match[0], 16)
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            raise self.fail(f"invalid code point {value:#x}")
        return chr(value)

    def property(self, *, negated: bool) -> str:
        self.portable = False
        if self.i >= len(self.p):
            raise self.fail("incomplete \\p escape")
        if self.p[self.i] != "{":
            name, self.i = self.p[self.i], self.i + 1
        else:
            end = self.p.find("}", self.i)
            if end < 0:
                raise self.fail("unclosed \\p{...}")
            name, self.i = self.p[self.i + 1 : end], end + 1
        if "!=" in name:
            negated, name = not negated, name.replace("!=", "=", 1)
        prop, sep, value = name.replace(":", "=", 1).partition("=")
        norm = normalize(prop)
        if sep:
            key = _VALUE_PROPERTIES.get(norm)
            if key is None:
                why = "has no Unicode age classes here" if norm == "age" else "is not supported"
                raise self.fail(f"Unicode property {prop!r} {why}")
            body = f"{key}={normalize(value)}"
        elif norm in ("cf", "sc", "lc"):  # general categories in Rust, not properties
            body = f"gc={norm}"
        elif not norm or not norm.isalnum():
            raise self.fail(f"unknown Unicode class {name!r}")
        else:
            body = norm
        return f"\\{'P' if negated else 'p'}{{{body}}}"

    # --- bracketed classes ---------------------------------------------------------------------

    def bracket(self) -> str:
        """`[...]` (the `[` consumed) as a set of the Python engine's V1 syntax."""
        negated = self.peek("^")
        self.i += negated
        operands, operators = [self.class_union(first=True)], []
        while self.p.startswith(("&&", "--", "~~"), self.i):
            operators.append(self.p[self.i : self.i + 2])
            self.i += 2
            operands.append(self.class_union(first=False))
        if not self.peek("]"):
            raise self.fail("unclosed character class")
        self.i += 1
        text = operands[0]
        self.portable &= not operators
        for operator, operand in zip(operators, operands[1:], strict=True):
            text = f"[{text}{operator}{operand}]"
        return f"[^{text[1:-1]}]" if negated and text.startswith("[") else text

    def class_union(self, *, first: bool) -> str:
        items: list[str] = []
        while self.i < len(self.p):
            if self.p.startswith(("&&", "--", "~~"), self.i) or (
                self.peek("]") and not (first and not items)
            ):
                break
            items.append(self.class_item())
        if self.i >= len(self.p):
            raise self.fail("unclosed character class")
        return f"[{''.join(items)}]" if items else "[]"

    def class_item(self) -> str:
        ascii_class = re.compile(r"\[:(\^?)([a-z]+):\]").match(self.p, self.i)
        if ascii_class is not None:
            if ascii_class[2] not in _ASCII_CLASSES:
                raise self.fail(f"unknown ASCII class {ascii_class[2]!r}")
            self.i = ascii_class.end()
            if not ascii_class[1]:
                return _ASCII_CLASSES[ascii_class[2]]  # ranges, flat in the enclosing set
            self.portable = False  # a nested, negated set
            return f"[^{_ASCII_CLASSES[ascii_class[2]]}]"
        if self.peek("["):
            self.i += 1
            self.portable = False  # a nested set
            return self.bracket()
        low = self.class_char()
        if len(low) == 1 and self.peek("-") and not self.p.startswith(("-]", "--"), self.i):
            self.i += 1
            high = self.class_char()
            if len(high) != 1 or high < low:
                raise self.fail("invalid character class range")
            return f"{char(low)}-{char(high)}"
        return char(low) if len(low) == 1 else low

    def class_char(self) -> str:
        """One character, or (for an escape that is a class) its set text."""
        if self.i >= len(self.p):
            raise self.fail("unclosed character class")
        c = self.p[self.i]
        self.i += 1
        if c != "\\":
            return c
        if self.i >= len(self.p):
            raise self.fail("pattern ends with a backslash")
        e = self.p[self.i]
        self.i += 1
        if e.isdigit():
            raise self.fail("back-references are not allowed in a class")
        item = self.class_escape(e, in_class=True)
        decoded = re.fullmatch(r"\\(?:x|U)([0-9a-f]+)", item)
        if decoded is not None:
            return chr(int(decoded[1], 16))
        return item


class References(Cursor):
    """Back-references (`\\1`, `\\k<name>`, `\\k<-1>`), resolved against the groups seen so
    far, and case-folding of what they and escapes emit under the `i` flag."""

    def cased(self, text: str) -> str:
        return f"(?i:{text})" if self.flags["i"] else text

    def numbered_backref(self) -> tuple[str, int | None, bool]:
        match = re.compile(r"\d+").match(self.p, self.i)
        assert match is not None
        self.i = match.end()
        self.numeric_backrefs = True
        return self.backref(int(match[0]))

    def backref(self, group: int) -> tuple[str, int | None, bool]:
        self.portable = False
        if group == 0:
            raise self.fail("invalid back-reference to group 0")
        self.backrefs.append(group)
        return self.cased(f"\\g<{group}>"), self.widths.get(group), True

    def named_backref(self, delimiters: tuple[str, str]) -> tuple[str, int | None, bool]:
        match = re.compile(
            re.escape(delimiters[0]) + r"(\w*?)([+-]\d+)?" + re.escape(delimiters[1])
        ).match(self.p, self.i)
        if match is None or not (match[1] or match[2]):
            raise self.fail("invalid group name in back-reference")
        self.i = match.end()
        return self.backref(self.resolve(match[1], match[2]))

    def resolve(self, name: str, relative: str | None) -> int:
        if relative is not None:
            if name:
                raise self.fail("back-references with a recursion level are not supported")
            offset = int(relative)
            return self.groups + (offset + 1 if offset < 0 else offset)
        if name in self.names:
            return self.names[name]
        if name.isdigit():
            return int(name)
        raise self.fail(f"unknown group name {name!r}")


def normalize(name: str) -> str:
    """Unicode's loose matching of property names (UAX #44 LM3), as Rust does it."""
    text = "".join(c.lower() for c in name if c.isascii() and c not in " _-")
    if name[:2].lower() == "is":
        text = text[2:]
    return text
