"""How a `kumo` module written in Python declares what Lua sees: functions registered under their
dotted Lua name, and objects Lua code holds as opaque values. The runtime exposes whatever is
registered here; a module never touches lupa.

Functions: `@kumo_function("string.split")` makes `kumo.string.split`;
`@kumo_function("open", module="redis")` makes `open` in a module of its own, the table
`require 'redis'` returns (as KumoMTA's `redis` and `sqlite`, which are not under `kumo`; the
name of such a module is taken before `require` searches files). Arguments arrive as
Python data (`policy.convert` rules: tables as lists or dicts, a LuaObject's proxy as the
object); the result goes back the same way, a `Values` tuple as several Lua results. An
exception of kumoclient's hierarchy, a ValueError or an OSError becomes a Lua error naming the
policy's calling `file:line`; anything else is a bug, logged with its traceback, and also a Lua
error. With `source=True` the function receives, first, the directory of the calling file (relative
file names resolve against it; `policy.paths.share_path` maps a missing /opt/kumomta/share file to
the bundled one). An `async def` function is awaited on the event loop while the calling handler
waits (the runtime runs handlers as coroutines); so is an `async def` LuaObject method or hook.

Objects: a `LuaObject` subclass returned from a function reaches Lua as a proxy: `obj:name(...)`
calls the method `name` listed in `lua_methods`; `obj[key]`, `obj[key] = v`, `#obj`,
`tostring(obj)`, `obj(...)`, `pairs(obj)`, `obj == other`, `obj + x` / `x + obj`, `obj - x` /
`x - obj` and the end of a `<close>` scope call the `lua_*` hooks; a proxy handed back to a
function arrives as the object itself.

Binary data: a Lua string that is not UTF-8 arrives as `bytes` (a UTF-8 one as `str`), and a
`bytes` result reaches Lua as a string of exactly those bytes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from kumoclient.errors import ConfigError

_F = TypeVar("_F", bound=Callable[..., Any])


class Values(tuple[Any, ...]):
    """Several results of one function, as Lua returns them (`return a, b`)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class KumoFunction:
    """One registered function: its dotted name under `kumo` (under another module:
    `module:name`, see `kumo_function`), the callable, whether it takes the caller's source
    path first, whether it is awaited."""

    name: str
    fn: Callable[..., Any]
    source: bool = False

    @property
    def lua_name(self) -> str:
        """The name policy code calls it by: `kumo.string.split`, `redis.open`."""
        module, sep, name = self.name.partition(":")
        return f"{module}.{name}" if sep else f"kumo.{self.name}"

    @property
    def is_async(self) -> bool:
        """True for an `async def` function (the calling handler waits for it)."""
        return inspect.iscoroutinefunction(self.fn)


REGISTRY: dict[str, KumoFunction] = {}
VALUES: dict[str, Any] = {}  # plain values under `kumo` (`kumo.version`)


def kumo_function(name: str, *, source: bool = False, module: str = "kumo") -> Callable[[_F], _F]:
    """Register the decorated callable as `kumo.<name>`, or as `<name>` of the module
    `require '<module>'` returns; a name is registered once."""
    key = name if module == "kumo" else f"{module}:{name}"

    def register(fn: _F) -> _F:
        if key in REGISTRY:
            raise ValueError(f"{REGISTRY[key].lua_name} is registered twice")
        REGISTRY[key] = KumoFunction(key, fn, source)
        return fn

    return register


@functools.cache
def _arity(fn: Callable[..., Any]) -> tuple[int, int | None]:
    """How many positional arguments `fn` requires, and takes at most (None: any number)."""
    required, most = 0, 0
    for param in inspect.signature(fn).parameters.values():
        if param.kind is param.VAR_POSITIONAL:
            return required, None
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            most += 1
            if param.default is param.empty:
                required = most
    return required, most


def fit_arguments(fn: Callable[..., Any], args: list[Any], *, skip: int = 0) -> list[Any]:
    """Lua's calling convention for `fn`: extra arguments are dropped and missing ones are nil
    (None), as KumoMTA's functions see them. `skip` leading parameters are supplied apart
    (`self`)."""
    required, most = _arity(fn)
    required, most = max(required - skip, 0), None if most is None else most - skip
    if most is not None and len(args) > most:
        return args[:most]
    if len(args) < required:
        return args + [None] * (required - len(args))
    return args


def kumo_value(name: str, value: Any) -> None:
    """Make `kumo.<name>` a plain value (a string, number, or data table)."""
    if name in VALUES or name in REGISTRY:
        raise ValueError(f"kumo.{name} is registered twice")
    VALUES[name] = value


class LuaObject:
    """A Python object Lua code holds as an opaque value (see the module's text).

    `lua_name` is what `tostring` and error messages call it; `lua_methods` the names callable
    as `obj:name(...)` (each a method of the subclass taking the Lua arguments after `self`);
    `lua_cached` whether its proxy is kept for the next crossing.
    """

    lua_name: ClassVar[str] = "object"
    lua_methods: ClassVar[frozenset[str]] = frozenset()
    # True: the object crosses into Lua as the same proxy each time (a recent few are kept);
    # False for objects made per call (a message and what it hands out), whose proxy must not
    # keep them (and their content) alive once Lua drops it
    lua_cached: ClassVar[bool] = True

    def lua_index(self, key: Any) -> Any:
        """`obj[key]` for a key that is not a method; None is Lua's nil."""
        return None

    def lua_newindex(self, key: Any, value: Any) -> None:
        """`obj[key] = value`."""
        raise ConfigError(f"{self.lua_name} is read-only")

    def lua_len(self) -> int:
        """`#obj`."""
        raise ConfigError(f"{self.lua_name} has no length")

    def lua_tostring(self) -> str | bytes:
        """`tostring(obj)` (bytes: a Lua string of exactly those bytes)."""
        return self.lua_name

    def lua_call(self, *args: Any) -> Any:
        """`obj(...)`."""
        raise ConfigError(f"{self.lua_name} cannot be called")

    def lua_pairs(self) -> Iterator[tuple[Any, Any]]:
        """`pairs(obj)`: key, value pairs."""
        raise ConfigError(f"{self.lua_name} cannot be iterated with pairs")

    def lua_eq(self, other: Any) -> bool:
        """`obj == other` (Lua asks only when both are objects): identity unless overridden."""
        return other is self

    def lua_add(self, other: Any) -> Any:
        """`obj + other`; `lua_radd` is `other + obj`."""
        raise ConfigError(f"cannot add {_describe(other)} to {self.lua_name}")

    def lua_radd(self, other: Any) -> Any:
        """`other + obj`."""
        raise ConfigError(f"cannot add {self.lua_name} to {_describe(other)}")

    def lua_sub(self, other: Any) -> Any:
        """`obj - other`; `lua_rsub` is `other - obj`."""
        raise ConfigError(f"cannot subtract {_describe(other)} from {self.lua_name}")

    def lua_rsub(self, other: Any) -> Any:
        """`other - obj`."""
        raise ConfigError(f"cannot subtract {self.lua_name} from {_describe(other)}")

    def lua_close(self) -> None:
        """The end of a `local x <close> = obj` scope."""


def _describe(value: Any) -> str:
    if isinstance(value, LuaObject):
        return value.lua_name
    return f"a {type(value).__name__} value"
