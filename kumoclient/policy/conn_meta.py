"""The connection metadata object (`conn_meta`) that the SMTP server events receive:
`get_meta(name)`, `set_meta(name, value)` (any JSON value; nil removes), `auth_info()`.

The object wraps the connection's own tables (the listener keeps them): what a handler sets is
seen by the later events of the connection and copied into the meta of each message it sends.
`auth_info()` is a copy (`identities` as `{identity, context}` tables, `groups`,
`peer_address`): changing it changes nothing.
"""

from __future__ import annotations

import copy
import json
from typing import Any, ClassVar

from kumoclient.core.meta import check_value
from kumoclient.errors import ConfigError
from kumoclient.policy.api import LuaObject


class ConnectionMeta(LuaObject):
    """`conn_meta` of one SMTP connection (see the module's text)."""

    lua_name: ClassVar[str] = "ConnectionMetaData"
    lua_methods: ClassVar[frozenset[str]] = frozenset({"get_meta", "set_meta", "auth_info"})

    def __init__(self, values: dict[str, Any], auth: dict[str, Any]) -> None:
        self.values = values
        self.auth = auth

    def get_meta(self, name: Any) -> Any:
        if not isinstance(name, str):
            raise ConfigError("conn_meta:get_meta: the name must be a string")
        return self.values.get(name)

    def set_meta(self, name: Any, value: Any) -> None:
        if not isinstance(name, str):
            raise ConfigError("conn_meta:set_meta: the name must be a string")
        if value is None:
            self.values.pop(name, None)
            return
        try:
            self.values[name] = check_value(value, f"conn_meta {name!r}")
        except ValueError as exc:
            raise ConfigError(f"conn_meta:set_meta: {exc}") from None

    def auth_info(self) -> dict[str, Any]:
        return copy.deepcopy(self.auth)

    def lua_tostring(self) -> str:
        return json.dumps(self.values, sort_keys=True, default=str)
