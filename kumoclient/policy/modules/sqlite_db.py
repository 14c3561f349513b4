"""`require 'sqlite'`: `sqlite.open(PATH, BUSY_TIMEOUT=500)` and the connection's
`db:execute(SQL, ...)` and `db:close()`, on the standard library's sqlite3.

A statement runs on a worker thread (the handler waits, the event loop goes on); one
connection runs one statement at a time, in autocommit mode (each statement is its own
transaction, as in KumoMTA). Parameters: several values bind `?` in order, one table of
`name = value` binds `:name`, one list binds `?` in order; values are numbers, strings and
nil. The result: for a statement without result columns, the number of rows it changed; for
one result column, the list of its values; else a list of rows, each a table of column =
value (a NULL is a missing key). Text that is not UTF-8, and blobs, come back as their bytes.
A relative PATH is relative to the calling policy file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import Any, ClassVar

from kumoclient.errors import ConfigError, PolicyIoError
from kumoclient.policy.api import LuaObject, kumo_function
from kumoclient.policy.modules import args

MEMORY = ":memory:"
_PARAMETER_TYPES = (int, float, str, bytes, type(None))


def _text(data: bytes) -> str | bytes:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _bindings(values: tuple[Any, ...]) -> list[Any] | dict[str, Any]:
    """The parameters of a statement, from the arguments after the SQL."""
    if len(values) == 1 and isinstance(values[0], dict | list):
        bound: list[Any] | dict[str, Any] = values[0]
    elif len(values) == 1 and values[0] is None:
        bound = []
    else:
        bound = list(values)
    for value in bound.values() if isinstance(bound, dict) else bound:
        if isinstance(value, bool) or not isinstance(value, _PARAMETER_TYPES):
            raise ConfigError(
                "db:execute: only numbers, strings and nil can be passed as parameter values"
            )
    return bound


class SqliteConnection(LuaObject):
    """The handle `sqlite.open` returns."""

    lua_name = "SqliteConnection"
    lua_methods: ClassVar[frozenset[str]] = frozenset({"execute", "close"})

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self.path = path
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(
                path,
                timeout=busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise PolicyIoError("sqlite.open", f"{path}: {exc}") from exc
        self._db.text_factory = _text
        self._lock = threading.Lock()  # one statement at a time on this connection
        # a handle the policy drops without close() is closed when it is collected
        self._finalizer = weakref.finalize(self, self._db.close)

    def _run(self, sql: str, bound: list[Any] | dict[str, Any]) -> Any:
        with self._lock:
            if self._db is None:
                raise ConfigError("db:execute: the connection was closed")
            cursor = self._db.execute(sql, bound)
            try:
                if cursor.description is None:  # no result columns: the rows it changed
                    (changed,) = self._db.execute("SELECT changes()").fetchone()
                    return changed
                names = [column[0] for column in cursor.description]
                rows = cursor.fetchall()
            finally:
                cursor.close()
        if len(names) == 1:
            return [row[0] for row in rows]
        return [{n: v for n, v in zip(names, row, strict=True) if v is not None} for row in rows]

    async def execute(self, sql: Any, *values: Any) -> Any:
        """`db:execute(SQL, ...)`: see the module's text."""
        query = args.text("db:execute", sql, name="SQL")
        bound = _bindings(values)
        try:
            return await asyncio.to_thread(self._run, query, bound)
        except sqlite3.Error as exc:
            raise PolicyIoError("db:execute", f"{exc} (in `{query}`)") from exc

    async def close(self) -> None:
        """`db:close()`: close the connection (later statements are errors)."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            self._db = None
            self._finalizer()

    def lua_tostring(self) -> str:
        return f"SqliteConnection({self.path})"


@kumo_function("open", module="sqlite", source=True)
def open_database(base: str, path: Any, busy_timeout: Any = None) -> SqliteConnection:
    """`sqlite.open(PATH, BUSY_TIMEOUT)`: a connection to the database file (created when
    missing); BUSY_TIMEOUT is milliseconds, 500 by default."""
    name = args.text("sqlite.open", path, name="PATH")
    timeout = (
        500
        if busy_timeout is None
        else args.integer("sqlite.open", busy_timeout, name="BUSY_TIMEOUT", minimum=0)
    )
    if name != MEMORY:
        name = str(Path(base, name))
    return SqliteConnection(name, timeout)
