"""`kumo.uuid.*`: new v1/v4/v6/v7 UUIDs and parsing; the Uuid object's text forms and bytes."""

from __future__ import annotations

import re
import uuid
from typing import Any, ClassVar

import uuid6

from kumoclient.errors import ConfigError
from kumoclient.policy.api import LuaObject, kumo_function
from kumoclient.policy.modules import args


class Uuid(LuaObject):
    """A UUID: fields `bytes`, `hyphenated`, `simple`, `braced`, `urn`; `tostring` hyphenated."""

    lua_name: ClassVar[str] = "Uuid"

    def __init__(self, value: uuid.UUID) -> None:
        self.value = value

    def lua_index(self, key: Any) -> Any:
        text = str(self.value)
        return {
            "bytes": self.value.bytes,
            "hyphenated": text,
            "simple": self.value.hex,
            "braced": f"{{{text}}}",
            "urn": self.value.urn,
        }.get(key)

    def lua_tostring(self) -> str:
        return str(self.value)

    def lua_eq(self, other: Any) -> bool:
        return isinstance(other, Uuid) and other.value == self.value


@kumo_function("uuid.new_v1")
def new_v1() -> Uuid:
    """Time and this host's node id (uuid.getnode: a MAC address, else a random node)."""
    return Uuid(uuid.uuid1())


@kumo_function("uuid.new_v4")
def new_v4() -> Uuid:
    return Uuid(uuid.uuid4())


@kumo_function("uuid.new_v6")
def new_v6() -> Uuid:
    """v1's fields reordered so that the text sorts by time (RFC 9562 §5.6)."""
    return Uuid(uuid.UUID(bytes=uuid6.uuid1_to_uuid6(uuid.uuid1()).bytes))


@kumo_function("uuid.new_v7")
def new_v7() -> Uuid:
    return Uuid(uuid.UUID(bytes=uuid6.uuid7().bytes))


# the forms Rust's uuid crate parses: simple, hyphenated, braced, urn
_FORMS = re.compile(
    r"(?:urn:uuid:)?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|\{([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\}"
    r"|([0-9a-fA-F]{32})"
)


@kumo_function("uuid.parse")
def parse(value: Any) -> Uuid:
    """A UUID in its simple, hyphenated, braced or urn form."""
    text = args.text("kumo.uuid.parse", value)
    match = _FORMS.fullmatch(text)
    if match is None:
        raise ConfigError(f"kumo.uuid.parse: invalid UUID {text!r}")
    return Uuid(uuid.UUID(next(g for g in match.groups() if g)))
