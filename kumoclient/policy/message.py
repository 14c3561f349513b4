"""The `msg` object handed to reception events: envelope, metadata, and header edits.

Header rules: the header block ends at the first empty line; names match case-insensitively;
folded lines (starting with space or tab) belong to the header above; values are unfolded.
`import_x_headers{'tenant'}` copies header `X-Tenant` into meta `tenant`; with no list, every
`X-*` header is imported (name lower-cased, `X-` removed, `-` becoming `_`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any


def _x_name(key: str) -> str:
    return "X-" + "-".join(part.capitalize() for part in key.replace("_", "-").split("-"))


class MessageView:
    """One message under policy control; `content` and `meta` are what gets spooled."""

    def __init__(
        self, message_id: str, sender: str, recipient: str, content: bytes, meta: dict[str, str]
    ) -> None:
        self.message_id = message_id
        self.sender = sender
        self.recipient = recipient
        self.content = content
        self.meta = meta

    def _split(self) -> tuple[list[bytes], bytes, bytes]:
        """Header lines (each with its line end), the separator, the body."""
        match = re.search(rb"\r?\n\r?\n", self.content)
        if match is None:
            head, sep, body = self.content, b"", b""
        else:
            head, sep, body = (
                self.content[: match.start()],
                self.content[match.start() : match.end()],
                self.content[match.end() :],
            )
        lines = head.splitlines(keepends=True)
        return lines, sep, body

    def _fields(self) -> list[tuple[str, str, list[int]]]:
        """(name, unfolded value, line indexes) for every header field."""
        lines, _, _ = self._split()
        fields: list[tuple[str, str, list[int]]] = []
        for index, raw in enumerate(lines):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line[:1] in (" ", "\t") and fields:
                name, value, where = fields[-1]
                fields[-1] = (name, value + " " + line.strip(), [*where, index])
            elif ":" in line:
                name, _, value = line.partition(":")
                fields.append((name.strip(), value.strip(), [index]))
        return fields

    def get_first_named_header_value(self, name: str) -> str | None:
        for field_name, value, _ in self._fields():
            if field_name.lower() == name.lower():
                return value
        return None

    def remove_headers(self, names: set[str]) -> None:
        lines, sep, body = self._split()
        drop = {i for n, _, where in self._fields() if n.lower() in names for i in where}
        kept = [line for i, line in enumerate(lines) if i not in drop]
        self.content = b"".join(kept) + sep + body

    def import_x_headers(self, keys: list[str] | None) -> None:
        wanted = {_x_name(k).lower(): k for k in keys} if keys else None
        for name, value, _ in self._fields():
            lower = name.lower()
            if wanted is not None and lower in wanted:
                self.meta[wanted[lower]] = value
            elif wanted is None and lower.startswith("x-"):
                self.meta[lower[2:].replace("-", "_")] = value

    def remove_x_headers(self, keys: list[str] | None) -> None:
        if keys:
            self.remove_headers({_x_name(k).lower() for k in keys})
        else:
            self.remove_headers(
                {n.lower() for n, _, _ in self._fields() if n.lower().startswith("x-")}
            )

    def append_header(self, name: str, value: str) -> None:
        lines, sep, body = self._split()
        eol = (
            b"\n"
            if lines and not lines[0].endswith(b"\r\n") and lines[0].endswith(b"\n")
            else b"\r\n"
        )
        head = b"".join(lines)
        if head and not head.endswith(b"\n"):
            head += eol
        new = f"{name}: {value}".encode() + eol
        self.content = head + new + (eol + body if sep else b"")

    def lua_methods(self, convert: Callable[[Any], Any]) -> dict[str, Callable[..., Any]]:
        """Python callables behind the Lua `msg` methods (Lua passes `msg` itself first)."""

        def names(value: Any) -> list[str] | None:
            data = convert(value)
            if data is None or data == {}:
                return None
            if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
                raise ValueError("expected a list of names")
            return data

        def set_meta(_: Any, key: Any, value: Any) -> None:
            if not isinstance(key, str):
                raise ValueError("meta keys are strings")
            if value is None:
                self.meta.pop(key, None)
            elif isinstance(value, str | int | float | bool):
                self.meta[key] = str(value) if not isinstance(value, str) else value
            else:
                raise ValueError(f"meta {key!r}: values are strings")

        return {
            "id": lambda _: self.message_id,
            "sender": lambda _: self.sender,
            "recipient": lambda _: self.recipient,
            "get_meta": lambda _, key: self.meta.get(key),
            "set_meta": set_meta,
            "get_first_named_header_value": lambda _, n: self.get_first_named_header_value(n),
            "import_x_headers": lambda _, keys=None: self.import_x_headers(names(keys)),
            "remove_x_headers": lambda _, keys=None: self.remove_x_headers(names(keys)),
            "append_header": lambda _, n, v: self.append_header(str(n), str(v)),
        }
