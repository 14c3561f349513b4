"""The MIME objects a policy gets from `msg:parse_mime()`: MimePart, its HeaderMap and Header
copies (KumoMTA's `docs/reference/mimepart/`, `headermap/`, `header/`).

MimePart: fields `body` (the decoded content: text, or bytes for a binary part; assigning
replaces it, transfer-encoded, Content-Type kept), `headers` (its HeaderMap, live), `id` (its
position when parsed: `""`, `"0"`, `"1.0"`); methods `get_simple_structure()`,
`append_part(part)`, `replace_body(content, opt_content_type)`, `rebuild()`;
`tostring(part)` is the part as RFC 5322 text. Parts are handles: a part taken from the
structure edits the tree it belongs to. Edits do not change the message until
`msg:set_data(tostring(part))`.

HeaderMap: `append`/`prepend(name, value)` (the value encoded: wrapped, or RFC 2047 when not
ASCII), `remove_all_named`, `get_first_named` (a Header or nil), `iter(opt_name)` (for
`for hdr in headers:iter() do`), a getter and a `set_<name>` setter for each typed header
(`from`, `to`, `cc`, `bcc`, `reply_to`, `resent_*`, `sender`, `subject`, `comments`,
`message_id`, `content_id`, `references`, `mime_version`, `content_type`,
`content_disposition`, `content_transfer_encoding`: the shapes of structured.py; a setter
takes the shape or a string that reads as it, and replaces the first such header or adds one
at the end); `tostring` is the header block.

Header (a copy): `name`, `raw_value`, `unstructured`, `value` (by the header's name, see
structured.KIND_OF), and each shape by name (`mailbox_list`, `address_list`, `mailbox`,
`message_id`, `message_id_list`, `mime_params`, `authentication_results`), which raise an
error when the header does not have it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kumoclient.errors import ConfigError
from kumoclient.policy.api import LuaObject
from kumoclient.policy.message import structured
from kumoclient.policy.message.conformance import rebuild, simple_structure
from kumoclient.policy.message.headers import Field, encode_value, field_bytes
from kumoclient.policy.message.mime import Part

# HeaderMap getter/setter name -> (header name, shape)
TYPED = {
    "from": ("From", structured.MAILBOX_LIST),
    "to": ("To", structured.ADDRESS_LIST),
    "cc": ("Cc", structured.ADDRESS_LIST),
    "bcc": ("Bcc", structured.ADDRESS_LIST),
    "reply_to": ("Reply-To", structured.ADDRESS_LIST),
    "resent_to": ("Resent-To", structured.ADDRESS_LIST),
    "resent_cc": ("Resent-Cc", structured.ADDRESS_LIST),
    "resent_bcc": ("Resent-Bcc", structured.ADDRESS_LIST),
    "resent_from": ("Resent-From", structured.MAILBOX_LIST),
    "sender": ("Sender", structured.MAILBOX),
    "resent_sender": ("Resent-Sender", structured.MAILBOX),
    "subject": ("Subject", structured.UNSTRUCTURED),
    "comments": ("Comments", structured.UNSTRUCTURED),
    "message_id": ("Message-ID", structured.MESSAGE_ID),
    "content_id": ("Content-ID", structured.MESSAGE_ID),
    "references": ("References", structured.MESSAGE_ID_LIST),
    "mime_version": ("Mime-Version", structured.UNSTRUCTURED),
    "content_type": ("Content-Type", structured.MIME_PARAMS),
    "content_disposition": ("Content-Disposition", structured.MIME_PARAMS),
    "content_transfer_encoding": ("Content-Transfer-Encoding", structured.MIME_PARAMS),
}


class MimePart(LuaObject):
    """A handle on one part of a parsed tree (see the module's text)."""

    lua_name: ClassVar[str] = "MimePart"
    lua_cached: ClassVar[bool] = False  # made per event: not kept alive
    lua_methods: ClassVar[frozenset[str]] = frozenset(
        {"get_simple_structure", "append_part", "replace_body", "rebuild"}
    )

    def __init__(self, part: Part) -> None:
        self.part = part

    def lua_index(self, key: Any) -> Any:
        if key == "body":
            return self.part.decoded()
        if key == "headers":
            return HeaderMap(self.part)
        if key == "id":
            return self.part.pid
        return None

    def lua_newindex(self, key: Any, value: Any) -> None:
        if key != "body":
            raise ConfigError(f"MimePart has no settable field {key!r}")
        self.replace_body(value)

    def lua_tostring(self) -> bytes:
        return self.part.to_bytes()

    def get_simple_structure(self) -> dict[str, Any]:
        """`{text_part, html_part, amp_html_part, header_part, attachments}`."""
        found = simple_structure(self.part)
        return {
            "text_part": _handle(found.text),
            "html_part": _handle(found.html),
            "amp_html_part": _handle(found.amp_html),
            "header_part": MimePart(found.header),
            "attachments": [_attachment(part) for part in found.attachments],
        }

    def append_part(self, part: Any) -> None:
        """Add `part` (a MimePart) as this part's last child."""
        if not isinstance(part, MimePart):
            raise ConfigError("append_part: expected a MimePart")
        self.part.append_part(Part.parse(part.part.to_bytes()))

    def replace_body(self, content: Any, content_type: Any = None) -> None:
        """A new body: text (a UTF-8 string) or binary; the Content-Type kept unless given."""
        if not isinstance(content, str | bytes):
            raise ConfigError("the body must be a string")
        if content_type is not None and not isinstance(content_type, str):
            raise ConfigError("the content type must be a string")
        self.part.replace_body(content, content_type)

    def rebuild(self) -> MimePart:
        """A new part rebuilt from this one (as check_fix_conformance fixes)."""
        try:
            return MimePart(rebuild(self.part))
        except ValueError as exc:
            raise ConfigError(f"rebuild: {exc}") from None


def _handle(part: Part | None) -> MimePart | None:
    return None if part is None else MimePart(part)


def _attachment(part: Part) -> dict[str, Any]:
    info = part.info()
    return {
        "file_name": info.file_name,
        "inline": info.disposition == "inline" if info.attachment else True,
        "content_id": info.content_id,
        "content_type": info.content_type or "application/octet-stream",
        "part": MimePart(part),
    }


class Header(LuaObject):
    """A copy of one header field (see the module's text)."""

    lua_name: ClassVar[str] = "Header"
    lua_cached: ClassVar[bool] = False  # made per event: not kept alive

    def __init__(self, found: Field) -> None:
        self.field = found

    def lua_index(self, key: Any) -> Any:
        raw = self.field.raw
        if key == "name":
            return self.field.name.strip()
        if key == "raw_value":
            return raw.lstrip(b" \t")
        if key == "value":
            key = structured.kind_of(self.field.name.strip())
        if key in structured.KINDS:
            try:
                return structured.parse(str(key), raw)
            except ValueError as exc:
                raise ConfigError(f"{self.field.name}: {exc}") from None
        return None

    def lua_tostring(self) -> str:
        return f"{self.field.name}:{self.field.raw.decode('utf-8', 'replace')}"


class HeaderIterator(LuaObject):
    """The function `headers:iter()` returns: each call gives the next Header, then nil."""

    lua_name: ClassVar[str] = "HeaderIterator"
    lua_cached: ClassVar[bool] = False  # made per event: not kept alive

    def __init__(self, fields: list[Field]) -> None:
        self.fields = fields

    def lua_call(self, *args: Any) -> Header | None:
        return Header(self.fields.pop(0)) if self.fields else None


class HeaderMap(LuaObject):
    """The live headers of a part (see the module's text)."""

    lua_name: ClassVar[str] = "HeaderMap"
    lua_cached: ClassVar[bool] = False  # made per event: not kept alive
    lua_methods: ClassVar[frozenset[str]] = frozenset(
        {"append", "prepend", "remove_all_named", "get_first_named", "iter"}
        | set(TYPED)
        | {f"set_{name}" for name in TYPED}
    )

    def __init__(self, part: Part) -> None:
        self.part = part

    def lua_tostring(self) -> bytes:
        return self.part.head

    def append(self, name: str, value: str) -> None:
        """A new last header, its value encoded."""
        self.part.add(name, encode_value(str(value)))

    def prepend(self, name: str, value: str) -> None:
        """A new first header, its value encoded."""
        self.part.add(name, encode_value(str(value)), first=True)

    def remove_all_named(self, name: str) -> None:
        """Remove every header named `name`."""
        self.part.remove_all(name)

    def get_first_named(self, name: str) -> Header | None:
        """The first header named `name` (a copy), or nil."""
        found = self.part.first(name)
        return None if found is None else Header(found)

    def iter(self, name: str | None = None) -> HeaderIterator:
        """An iterator over the headers (named `name` only, when given)."""
        fields = self.part.fields()
        if name is not None:
            fields = [f for f in fields if f.matches(name)]
        return HeaderIterator(fields)

    def get_typed(self, method: str) -> Any:
        """The shape of the first header a getter names, or nil."""
        name, kind = TYPED[method]
        found = self.part.first(name)
        if found is None:
            return None
        try:
            return structured.parse(kind, found.raw)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None

    def set_typed(self, method: str, value: Any) -> None:
        """Replace the first header a setter names (or add it at the end)."""
        name, kind = TYPED[method]
        try:
            text = structured.encode(kind, value)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"set_{method}: {exc}") from None
        if kind == structured.UNSTRUCTURED:
            text = encode_value(text)
        found = self.part.first(name)
        if found is None:
            self.part.add(name, text)
            return
        head = self.part.head
        self.part.set_head(head[: found.start] + field_bytes(name, text) + head[found.end :])


def _getter(method: str) -> Any:
    def get(self: HeaderMap) -> Any:
        return self.get_typed(method)

    get.__name__ = method
    return get


def _setter(method: str) -> Any:
    def set_value(self: HeaderMap, value: Any) -> None:
        self.set_typed(method, value)

    set_value.__name__ = f"set_{method}"
    return set_value


for _method in TYPED:
    setattr(HeaderMap, _method, _getter(_method))
    setattr(HeaderMap, f"set_{_method}", _setter(_method))
