"""EnvelopeAddress: the sender or a recipient of the envelope as policy code sees it (the
argument of `smtp_server_mail_from` and `smtp_server_rcpt_to`): `.user` (the local part,
unquoted), `.domain`, `.email` (`user@domain`), and `tostring(addr)` (the address as given).
The null sender has an empty user, domain and email."""

from __future__ import annotations

from typing import Any, ClassVar

from kumoclient.core.address import split_mailbox, unquote_local_part
from kumoclient.policy.api import LuaObject


class EnvelopeAddress(LuaObject):
    """One envelope address (see the module's text)."""

    lua_name: ClassVar[str] = "EnvelopeAddress"

    def __init__(self, address: str) -> None:
        self.address = address
        if address:
            local, self.domain = split_mailbox(address)
            self.user = unquote_local_part(local)
        else:
            self.user = self.domain = ""

    @property
    def email(self) -> str:
        return f"{self.user}@{self.domain}" if self.address else ""

    def lua_index(self, key: Any) -> Any:
        if key == "user":
            return self.user
        if key == "domain":
            return self.domain
        if key == "email":
            return self.email
        return None

    def lua_tostring(self) -> str:
        return self.address

    def lua_eq(self, other: Any) -> bool:
        return isinstance(other, EnvelopeAddress) and other.address == self.address
