"""`kumo.encode.*`: base32/base32hex/base64/base64url (padded and not) and hex of any bytes, and
text to and from a named charset (WHATWG labels, as KumoMTA's encoder library uses)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import webencodings

from kumoclient.errors import ConfigError
from kumoclient.policy.api import kumo_function
from kumoclient.policy.modules import args


@dataclass(frozen=True, slots=True)
class Codec:
    """One text form of bytes: its encoder, decoder, alphabet and whether it pads with `=`."""

    name: str
    encode_padded: Callable[[bytes], bytes]
    decode_padded: Callable[[bytes], bytes]
    alphabet: str
    block: int  # characters per padded block
    padded: bool

    def encode(self, raw: bytes) -> str:
        encoded = self.encode_padded(raw).decode("ascii")
        return encoded if self.padded else encoded.rstrip("=")

    def decode(self, encoded: str) -> bytes:
        """Strict: only the alphabet, a possible length, no stray bits (KumoMTA's decoder);
        for the padded forms any run of trailing `=` is accepted, missing padding too."""
        body = encoded.rstrip("=") if self.padded else encoded
        bad = re.search(f"[^{re.escape(self.alphabet)}]", body)
        if bad is not None:
            raise ConfigError(f"invalid symbol at {bad.start()}")
        padding = -len(body) % self.block
        try:
            raw = self.decode_padded((body + "=" * padding).encode("ascii"))
        except (binascii.Error, ValueError) as exc:
            raise ConfigError(f"invalid length at {len(body)}") from exc
        if self.encode(raw).rstrip("=") != body.rstrip("="):
            raise ConfigError("non-zero trailing bits or invalid length")
        return raw


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32HEX = "0123456789ABCDEFGHIJKLMNOPQRSTUV"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _b64(raw: bytes) -> bytes:
    return base64.b64decode(raw, validate=True)


def _b64url(raw: bytes) -> bytes:
    return base64.urlsafe_b64decode(raw)


CODECS: dict[str, Codec] = {}


def _nopad(codec: Codec) -> Codec:
    return Codec(
        f"{codec.name}_nopad",
        codec.encode_padded,
        codec.decode_padded,
        codec.alphabet,
        codec.block,
        padded=False,
    )


for _base in (
    Codec("base32", base64.b32encode, base64.b32decode, _B32, 8, True),
    Codec("base32hex", base64.b32hexencode, base64.b32hexdecode, _B32HEX, 8, True),
    Codec("base64", base64.b64encode, _b64, _B64 + "+/", 4, True),
    Codec("base64url", base64.urlsafe_b64encode, _b64url, _B64 + "-_", 4, True),
):
    CODECS[_base.name] = _base
    CODECS[f"{_base.name}_nopad"] = _nopad(_base)
CODECS["hex"] = Codec("hex", binascii.hexlify, binascii.unhexlify, "0123456789abcdef", 2, False)


def _register(codec: Codec) -> None:
    encode_name, decode_name = f"encode.{codec.name}_encode", f"encode.{codec.name}_decode"

    def encode(value: Any) -> str:
        return codec.encode(args.data(f"kumo.{encode_name}", value))

    def decode(value: Any) -> bytes:
        text = args.text(f"kumo.{decode_name}", value)
        try:
            return codec.decode(text)
        except ConfigError as exc:
            raise ConfigError(f"kumo.{decode_name}: {exc}") from exc

    kumo_function(encode_name)(encode)
    kumo_function(decode_name)(decode)


for _codec in CODECS.values():
    _register(_codec)


def _charset(what: str, label: Any) -> webencodings.Encoding:
    found = webencodings.lookup(args.text(what, label, name="charset"))
    if found is None:
        raise ConfigError(f"{what}: unknown charset {label}")
    return found


@kumo_function("encode.charset_encode")
def charset_encode(charset: Any, value: Any, ignore_errors: Any = None) -> bytes:
    """UTF-8 text as bytes of `charset`; unmappable characters are dropped unless
    `ignore_errors` is false, then they are an error."""
    what = "kumo.encode.charset_encode"
    encoding = _charset(what, charset)
    text = args.text(what, value)
    try:
        return text.encode(
            encoding.codec_info.name, "strict" if ignore_errors is False else "ignore"
        )
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"{what}: input string did not encode into {charset} bytes: {exc}"
        ) from exc


@kumo_function("encode.charset_decode")
def charset_decode(charset: Any, value: Any) -> str:
    """Bytes of `charset` as text; bytes that are not valid in it are an error."""
    what = "kumo.encode.charset_decode"
    encoding = _charset(what, charset)
    try:
        return args.data(what, value).decode(encoding.codec_info.name)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what}: input string did not decode from {charset} bytes: {exc}"
        ) from exc
