"""The address objects a policy gets: envelope addresses (`msg:sender()`, `msg:recipient()`) and
address headers (`msg:from_header()`, `msg:to_header()`, `msg:get_address_header(name)`).

EnvelopeAddress (KumoMTA's): fields `user` (the local part, its quotes and escapes removed:
`"info@"@example.com` has user `info@`), `domain`, `email` (the address as written);
`tostring(addr)` is the address; the null sender's three fields are empty strings. A string
given for one (`msg:set_sender('<a@example.com>')`) may have angle brackets; `<>` and `""`
are the null sender, allowed for a sender only.

AddressHeader: the mailboxes and groups of a header. `user`, `domain`, `email`, `name` are
those of its one mailbox and raise an error when it holds anything else; `list` is every
mailbox (groups flattened), each with the same four fields and a `tostring` of
`{"name":null,"address":"user@example.com"}`; `tostring(header)` is the JSON of the whole
list (`[{"Address":{...}},{"Group":{"name":...,"addresses":[...]}}]`).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from kumoclient.core.address import check_mailbox, check_sender, split_mailbox, unquote_local_part
from kumoclient.errors import ConfigError
from kumoclient.policy.api import LuaObject
from kumoclient.policy.message.structured import addr_spec


class EnvelopeAddress(LuaObject):
    """A sender or recipient (see the module's text)."""

    lua_name: ClassVar[str] = "EnvelopeAddress"
    lua_cached: ClassVar[bool] = False  # made per event: not kept alive

    def __init__(self, text: str) -> None:
        self.text = text

    @classmethod
    def parse(cls, value: Any, *, sender: bool = False) -> EnvelopeAddress:
        """An address from a string or an EnvelopeAddress; AddressError (a Lua error) when
        the string is not a mailbox (or, for a sender, the null sender)."""
        if isinstance(value, EnvelopeAddress):
            text = value.text
        elif isinstance(value, str):
            text = value.strip()
            if text.startswith("<") and text.endswith(">"):
                text = text[1:-1]
        else:
            raise ConfigError(f"expected an address string or an EnvelopeAddress, got {value!r}")
        return cls(check_sender(text) if sender else check_mailbox(text))

    def parts(self) -> tuple[str, str]:
        """The local part (as written) and the domain; two empty strings for `<>`."""
        return split_mailbox(self.text) if self.text else ("", "")

    def lua_index(self, key: Any) -> Any:
        if key == "email":
            return self.text
        local, domain = self.parts()
        if key == "user":
            return unquote_local_part(local)
        if key == "domain":
            return domain
        return None

    def lua_tostring(self) -> str:
        return self.text


class HeaderAddress(LuaObject):
    """One mailbox of an address header."""

    lua_name: ClassVar[str] = "HeaderAddress"
    lua_cached: ClassVar[bool] = False  # made per event: not kept alive

    def __init__(self, shape: dict[str, Any]) -> None:
        self.shape = shape

    @property
    def email(self) -> str:
        address = self.shape["address"]
        return addr_spec(address["local_part"], address["domain"])

    def lua_index(self, key: Any) -> Any:
        address = self.shape["address"]
        fields = {
            "user": address["local_part"],
            "domain": address["domain"],
            "email": self.email,
            "name": self.shape.get("name"),
        }
        return fields.get(key) if isinstance(key, str) else None

    def wire(self) -> dict[str, Any]:
        """KumoMTA's JSON form: `{"name": ..., "address": "user@domain"}`."""
        return {"name": self.shape.get("name"), "address": self.email}

    def lua_tostring(self) -> str:
        return json.dumps(self.wire(), separators=(",", ":"), ensure_ascii=False)


class AddressHeader(LuaObject):
    """The parsed addresses of a header (see the module's text)."""

    lua_name: ClassVar[str] = "AddressHeader"
    lua_cached: ClassVar[bool] = False  # made per event: not kept alive

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries

    def mailboxes(self) -> list[HeaderAddress]:
        """Every mailbox, groups flattened."""
        found: list[HeaderAddress] = []
        for entry in self.entries:
            members = entry.get("entries", [entry])
            found.extend(HeaderAddress(member) for member in members)
        return found

    def _single(self) -> HeaderAddress:
        if not self.entries:
            raise ConfigError("no addresses")
        if len(self.entries) > 1:
            raise ConfigError("is not a simple single address")
        if "entries" in self.entries[0]:
            raise ConfigError("is not a simple address")
        return HeaderAddress(self.entries[0])

    def lua_index(self, key: Any) -> Any:
        if key == "list":
            return self.mailboxes()
        if key in ("user", "domain", "email", "name"):
            return self._single().lua_index(key)
        return None

    def lua_tostring(self) -> str:
        wire: list[dict[str, Any]] = []
        for entry in self.entries:
            if "entries" in entry:
                members = [HeaderAddress(m).wire() for m in entry["entries"]]
                wire.append({"Group": {"name": entry.get("name"), "addresses": members}})
            else:
                wire.append({"Address": HeaderAddress(entry).wire()})
        return json.dumps(wire, separators=(",", ":"), ensure_ascii=False)
