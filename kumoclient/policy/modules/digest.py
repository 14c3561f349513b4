"""`kumo.digest.*`: SHA-1/2/3 digests and CRC32 over the arguments (strings as bytes, other
values as their JSON text), HMACs keyed by a KeySource, and the BinaryResult they return."""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from collections.abc import Callable
from typing import Any, ClassVar

from kumoclient.errors import ConfigError
from kumoclient.policy.api import LuaObject, kumo_function
from kumoclient.policy.modules.encode import CODECS
from kumoclient.policy.modules.keysource import load_key


class BinaryResult(LuaObject):
    """Bytes with read-only fields for their encodings; `tostring` is the hex form."""

    lua_name: ClassVar[str] = "BinaryResult"

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def lua_index(self, key: Any) -> Any:
        if key == "bytes":
            return self.raw
        if key == "hex":
            return self.raw.hex()
        codec = CODECS.get(key) if isinstance(key, str) else None
        return None if codec is None else codec.encode(self.raw)

    def lua_tostring(self) -> str:
        return self.raw.hex()

    def lua_eq(self, other: Any) -> bool:
        return isinstance(other, BinaryResult) and other.raw == self.raw


def _feed(what: str, update: Callable[[bytes], object], values: tuple[Any, ...]) -> None:
    for value in values:
        if isinstance(value, bytes):
            update(value)
        elif isinstance(value, str):
            update(value.encode("utf-8"))
        else:
            try:
                text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{what}: cannot digest {value!r}: {exc}") from exc
            update(text.encode("utf-8"))


def _register_digest(name: str, algorithm: str) -> None:
    def digest(*values: Any) -> BinaryResult:
        state = hashlib.new(algorithm)
        _feed(f"kumo.digest.{name}", state.update, values)
        return BinaryResult(state.digest())

    kumo_function(f"digest.{name}")(digest)


for _name, _algorithm in {
    "sha1": "sha1",
    "sha224": "sha224",
    "sha256": "sha256",
    "sha384": "sha384",
    "sha512": "sha512",
    "sha512_256": "sha512_256",
    "sha3_256": "sha3_256",
    "sha3_384": "sha3_384",
    "sha3_512": "sha3_512",
}.items():
    _register_digest(_name, _algorithm)


@kumo_function("digest.crc32")
def crc32(*values: Any) -> BinaryResult:
    """CRC-32 (IEEE) of the arguments, as 4 big-endian bytes."""
    state = [0]

    def update(chunk: bytes) -> None:
        state[0] = zlib.crc32(chunk, state[0])

    _feed("kumo.digest.crc32", update, values)
    return BinaryResult(state[0].to_bytes(4, "big"))


def _register_hmac(name: str) -> None:
    async def sign(base: str, key: Any, message: Any) -> BinaryResult:
        what = f"kumo.digest.hmac_{name}"
        secret = await load_key(what, base, key)
        if isinstance(message, str):
            message = message.encode("utf-8")
        if not isinstance(message, bytes):
            raise ConfigError(f"{what}: the message must be a string")
        return BinaryResult(hmac.new(secret, message, name).digest())

    kumo_function(f"digest.hmac_{name}", source=True)(sign)


for _name in ("sha1", "sha224", "sha256", "sha384", "sha512"):
    _register_hmac(_name)
