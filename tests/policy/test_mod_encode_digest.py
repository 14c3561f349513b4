"""kumo.encode.*, kumo.digest.*, kumo.uuid.*: the reference examples, binary data, errors."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import zlib
from pathlib import Path

import pytest

from kumoclient.errors import ConfigError, PolicyLoadError
from kumoclient.policy.modules import digest, encode, uuids
from kumoclient.policy.modules.keysource import load_key
from tests.policy.conftest import LoadPolicy

ALL_BYTES = bytes(range(256))


def test_reference_example_of_the_digest_module(load_policy: LoadPolicy) -> None:
    load_policy(
        r"""
        local d = kumo.digest.sha1 'hello'
        assert(tostring(d) == d.hex)
        assert(d.hex == 'aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d')
        assert(
          d.bytes
            == '\xaa\xf4\xc6\x1d\xdc\xc5\xe8\xa2\xda\xbe\xde\x0f\x3b\x48\x2c\xd9\xae\xa9\x43\x4d'
        )
        assert(d.base32 == 'VL2MMHO4YXUKFWV63YHTWSBM3GXKSQ2N')
        assert(d.base32_nopad == 'VL2MMHO4YXUKFWV63YHTWSBM3GXKSQ2N')
        assert(d.base32hex == 'LBQCC7ESONKA5MLURO7JMI1CR6NAIGQD')
        assert(d.base64 == 'qvTGHdzF6KLavt4PO0gs2a6pQ00=')
        assert(d.base64_nopad == 'qvTGHdzF6KLavt4PO0gs2a6pQ00')
        assert(d.base64url == 'qvTGHdzF6KLavt4PO0gs2a6pQ00=')
        assert(d.base64url_nopad == 'qvTGHdzF6KLavt4PO0gs2a6pQ00')
        """
    )


def test_reference_example_of_the_uuid_module(load_policy: LoadPolicy) -> None:
    load_policy(
        r"""
        local u = kumo.uuid.parse '69994630-3e27-11ef-91fc-cc28aa0a5c5a'
        assert(tostring(u) == '69994630-3e27-11ef-91fc-cc28aa0a5c5a')
        assert(u.hyphenated == '69994630-3e27-11ef-91fc-cc28aa0a5c5a')
        assert(u.simple == '699946303e2711ef91fccc28aa0a5c5a')
        assert(u.braced == '{69994630-3e27-11ef-91fc-cc28aa0a5c5a}')
        assert(u.urn == 'urn:uuid:69994630-3e27-11ef-91fc-cc28aa0a5c5a')
        assert(
          u.bytes
            == '\x69\x99\x46\x30\x3e\x27\x11\xef\x91\xfc\xcc\x28\xaa\x0a\x5c\x5a'
        )
        assert(
          kumo.encode.base64url_nopad_encode(u.bytes) == 'aZlGMD4nEe-R_MwoqgpcWg'
        )
        local b = kumo.uuid.parse '{69994630-3e27-11ef-91fc-cc28aa0a5c5a}'
        assert(b.hyphenated == '69994630-3e27-11ef-91fc-cc28aa0a5c5a')
        assert(b == u, 'equal uuids compare equal')
        """
    )


def test_new_uuids_have_their_version_and_sort_by_time(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        V1, V4 = tostring(kumo.uuid.new_v1()), tostring(kumo.uuid.new_v4())
        A6, B6 = tostring(kumo.uuid.new_v6()), tostring(kumo.uuid.new_v6())
        A7, B7 = tostring(kumo.uuid.new_v7()), tostring(kumo.uuid.new_v7())
        """
    )
    g = runtime._lua.globals()
    assert [s[14] for s in (g.V1, g.V4, g.A6, g.A7)] == ["1", "4", "6", "7"]
    assert g.A6 < g.B6
    assert g.A7 < g.B7


def test_every_byte_round_trips_through_every_encoding_in_lua(load_policy: LoadPolicy) -> None:
    load_policy(
        """
        local all = {}
        for i = 0, 255 do all[#all + 1] = string.char(i) end
        all = table.concat(all)
        for _, name in ipairs { 'base32', 'base32_nopad', 'base32hex', 'base32hex_nopad',
                                'base64', 'base64_nopad', 'base64url', 'base64url_nopad', 'hex' } do
          local text = kumo.encode[name .. '_encode'](all)
          local back = kumo.encode[name .. '_decode'](text)
          assert(back == all, name .. ' lost bytes')
          assert(#back == 256, name)
        end
        assert(kumo.encode.hex_encode('\\xff\\x00') == 'ff00')
        assert(kumo.encode.base64_decode('/w==') == '\\xff')
        """
    )


def test_digests_of_binary_data_and_of_several_arguments(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        BIN = kumo.digest.sha256('\\xff\\xfe\\x00').hex
        SEVERAL = kumo.digest.sha256('a', 'b', 1, { x = true }).hex
        CRC = kumo.digest.crc32('hello').hex
        """
    )
    g = runtime._lua.globals()
    assert hashlib.sha256(b"\xff\xfe\x00").hexdigest() == g.BIN
    assert hashlib.sha256(b'ab1{"x":true}').hexdigest() == g.SEVERAL
    assert zlib.crc32(b"hello").to_bytes(4, "big").hex() == g.CRC


@pytest.mark.parametrize(
    ("name", "algorithm"),
    [
        ("sha1", "sha1"),
        ("sha224", "sha224"),
        ("sha256", "sha256"),
        ("sha384", "sha384"),
        ("sha512", "sha512"),
        ("sha512_256", "sha512_256"),
        ("sha3_256", "sha3_256"),
        ("sha3_384", "sha3_384"),
        ("sha3_512", "sha3_512"),
    ],
)
def test_each_digest_function_matches_its_algorithm(name: str, algorithm: str) -> None:
    from kumoclient.policy.api import REGISTRY

    result = REGISTRY[f"digest.{name}"].fn(ALL_BYTES, "é")
    assert result.raw == hashlib.new(algorithm, ALL_BYTES + "é".encode()).digest()


@pytest.mark.parametrize(
    ("codec", "text", "expected"),
    [
        ("base64", "MmVtYWlsLmxvZwAuY3N2", b"2email.log\0.csv"),  # padding missing
        ("base64", "MmVtYWlsLmxvZwAuY3N2===", b"2email.log\0.csv"),  # excess padding
        ("base64url", "_-8", b"\xff\xef"),
        ("base32", "MZXW6===", b"foo"),
        ("base32hex_nopad", "CPNMU", b"foo"),
        ("hex", "ff00", b"\xff\x00"),
    ],
)
def test_decoding_accepts_what_kumomta_accepts(codec: str, text: str, expected: bytes) -> None:
    assert encode.CODECS[codec].decode(text) == expected


@pytest.mark.parametrize(
    ("codec", "text", "message"),
    [
        ("base64", "Zm9v!", "invalid symbol at 4"),
        ("base64", "Zm9=v", "invalid symbol at 3"),
        ("base64", "Zh==", "non-zero trailing bits"),  # 'Zh' has stray low bits
        ("base64", "Z", "invalid length"),
        ("base64_nopad", "Zm8=", "invalid symbol at 3"),  # no padding in the nopad forms
        ("base64url", "a+b/", "invalid symbol at 1"),
        ("base32", "mzxw6===", "invalid symbol at 0"),  # lower case is not base32
        ("hex", "FF", "invalid symbol at 0"),  # KumoMTA's hex is lower case
        ("hex", "abc", "invalid length"),
    ],
)
def test_decoding_is_strict(codec: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        encode.CODECS[codec].decode(text)


def test_a_decode_error_names_the_function_and_the_policy_line(load_policy: LoadPolicy) -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy("local x = 1\nkumo.encode.base64_decode('@@')\n")
    assert "policy.lua:2: kumo.encode.base64_decode: invalid symbol at 0" in str(info.value)


def test_decoding_text_that_is_not_utf8_is_an_error(load_policy: LoadPolicy) -> None:
    with pytest.raises(
        PolicyLoadError, match=r"policy.lua:1: kumo.encode.hex_decode: argument is not valid UTF-8"
    ):
        load_policy("kumo.encode.hex_decode('\\xff')\n")


def test_charsets_use_whatwg_labels(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local sjis = kumo.encode.charset_encode('shift_jis', '日本')
        SJIS = kumo.encode.hex_encode(sjis)
        BACK = kumo.encode.charset_decode('shift_jis', sjis)
        EURO = kumo.encode.charset_decode('iso-8859-1', '\\x80')
        DROPPED = kumo.encode.charset_encode('iso-8859-1', 'a日b')
        local ok, err = pcall(kumo.encode.charset_encode, 'iso-8859-1', 'a日b', false)
        STRICT = err
        local ok2, err2 = pcall(kumo.encode.charset_decode, 'nope', 'x')
        UNKNOWN = err2
        """
    )
    g = runtime._lua.globals()
    assert g.SJIS == "93fa967b"
    assert g.BACK == "日本"
    assert g.EURO == "€"  # WHATWG: iso-8859-1 is windows-1252
    assert g.DROPPED == "ab"
    assert "did not encode into iso-8859-1 bytes" in g.STRICT
    assert "unknown charset nope" in g.UNKNOWN


def test_hmac_python_level_with_inline_and_file_keys(tmp_path: Path) -> None:
    (tmp_path / "key.bin").write_bytes(b"\x00\xffkey")
    inline = asyncio.run(load_key("t", str(tmp_path), {"key_data": "your key"}))
    from_file = asyncio.run(load_key("t", str(tmp_path), "key.bin"))
    assert (inline, from_file) == (b"your key", b"\x00\xffkey")
    from kumoclient.policy.api import REGISTRY

    result = asyncio.run(
        REGISTRY["digest.hmac_sha256"].fn(str(tmp_path), {"key_data": "your key"}, "your message")
    )
    assert result.raw.hex() == "87fc1cec5c02f0991ae80f50e98eb2eb5213d07fc40417682a74448ac1deb07c"
    result = asyncio.run(REGISTRY["digest.hmac_sha1"].fn(str(tmp_path), "key.bin", b"\xff"))
    assert result.raw == hmac.new(b"\x00\xffkey", b"\xff", "sha1").digest()


def test_reference_example_of_hmac_sha256(load_policy: LoadPolicy) -> None:
    load_policy(
        """
        local key_bytes = { key_data = 'your key' }
        local hmac = kumo.digest.hmac_sha256(key_bytes, 'your message')
        assert(hmac.hex == '87fc1cec5c02f0991ae80f50e98eb2eb5213d07fc40417682a74448ac1deb07c')
        """
    )


async def test_hmac_in_a_handler_with_a_binary_key_file_and_message(
    load_policy: LoadPolicy, tmp_path: Path
) -> None:
    """The HMAC waits for its key inside a handler; a message that is not UTF-8 crosses as
    its bytes through the wait, and a relative key file is the policy's."""
    (tmp_path / "key.bin").write_bytes(b"\x00\xffkey")
    runtime = load_policy(
        """
        kumo.on('sign', function()
          return kumo.digest.hmac_sha1('key.bin', '\\xff\\x00\\x80').hex
        end)
        """
    )
    fired = await runtime.fire("sign")
    assert fired.value == hmac.new(b"\x00\xffkey", b"\xff\x00\x80", "sha1").hexdigest()


def test_binary_result_and_uuid_objects_python_level() -> None:
    result = digest.BinaryResult(b"\x00\xff")
    assert result.lua_index("base64") == base64.b64encode(b"\x00\xff").decode()
    assert result.lua_index("nope") is None
    with pytest.raises(ConfigError, match="invalid UUID"):
        uuids.parse("69994630-3e27-11ef-91fc")
    assert uuids.parse("699946303E2711EF91FCCC28AA0A5C5A").lua_tostring() == (
        "69994630-3e27-11ef-91fc-cc28aa0a5c5a"
    )
