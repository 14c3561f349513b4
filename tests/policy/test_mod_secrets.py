"""kumo.secrets.load and the KeySource forms. The Vault form is tested against an aiohttp
server on loopback answering Vault's KV v2 read (a scripted fake: no Vault server can be
installed here); it checks the request's path and token as Vault would."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kumoclient.errors import ConfigError
from kumoclient.policy.modules.keysource import load, load_key
from tests.policy.conftest import LoadPolicy
from tests.vault_server import vault_kv2

TOKEN = "hvs.test-token"


@pytest.fixture
async def vault() -> AsyncIterator[str]:
    secret = {"key": "-----BEGIN KEY-----", "password": "s3cret"}
    async with vault_kv2(TOKEN, {"dkim/example.org": secret}) as address:
        yield address


async def test_vault_kv2_field_default_and_named(vault: str) -> None:
    source = {"vault_mount": "secret", "vault_path": "dkim/example.org", "vault_address": vault}
    source["vault_token"] = TOKEN
    assert await load(".", source) == b"-----BEGIN KEY-----"
    assert await load(".", {**source, "vault_key": "password"}) == b"s3cret"


async def test_vault_address_and_token_from_the_environment(
    vault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VAULT_ADDR", vault)
    monkeypatch.setenv("VAULT_TOKEN", TOKEN)
    source = {"vault_mount": "secret", "vault_path": "dkim/example.org"}
    assert await load(".", source) == b"-----BEGIN KEY-----"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vault_token": "wrong"}, "HTTP 403"),
        ({"vault_path": "other"}, "HTTP 404"),
        ({"vault_key": "nope"}, "vault secret at dkim/example.org does not contain key 'nope'"),
        ({"vault_address": "http://127.0.0.1:9"}, "reading vault_mount=secret"),
    ],
)
async def test_vault_errors_say_what_failed(
    vault: str, change: dict[str, str], message: str
) -> None:
    source = {"vault_mount": "secret", "vault_path": "dkim/example.org", "vault_address": vault}
    source["vault_token"] = TOKEN
    with pytest.raises(ConfigError, match=r"kumo\.secrets\.load: ") as info:
        await load(".", {**source, **change})
    assert message in str(info.value)


async def test_vault_without_an_address_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VAULT_ADDR", raising=False)
    with pytest.raises(ConfigError, match=r"vault_address was not specified and \$VAULT_ADDR"):
        await load(".", {"vault_mount": "secret", "vault_path": "x"})


async def test_file_and_inline_sources(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_bytes(b"\x00binary\xff")
    assert await load(str(tmp_path), "key.pem") == b"\x00binary\xff"
    assert await load(str(tmp_path), {"key_data": "inline"}) == b"inline"
    assert await load(str(tmp_path), {"key_data": b"\xff"}) == b"\xff"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.pem", "KeySource failed to load data from file"),
        ({"event_name": "x", "event_args": []}, "{event_name=...} is not supported yet"),
        ({"other": 1}, "a KeySource is a file name"),
        (42, "a KeySource is a file name"),
    ],
)
async def test_bad_sources(tmp_path: Path, source: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        await load_key("kumo.secrets.load", str(tmp_path), source)
    assert message in str(info.value)


def test_secrets_load_from_a_policy(load_policy: LoadPolicy, tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text("hunter2")
    load_policy(
        """
        assert(kumo.secrets.load 'pw.txt' == 'hunter2')
        assert(kumo.secrets.load { key_data = 'inline' } == 'inline')
        """
    )


async def test_a_handler_waits_for_vault_while_the_loop_serves_it(
    load_policy: LoadPolicy, vault: str
) -> None:
    """kumo.secrets.load and kumo.digest.hmac_* in a handler: the handler's coroutine waits
    while this test's event loop runs the Vault server that answers it (were the wait not
    handed to this loop, the server could not answer)."""
    runtime = load_policy(
        f"""
        kumo.on('sign', function(field, message)
          local source = {{ vault_mount = 'secret', vault_path = 'dkim/example.org',
            vault_address = '{vault}', vault_token = '{TOKEN}', vault_key = field }}
          local key = kumo.secrets.load(source)
          return key .. ' ' .. kumo.digest.hmac_sha256(source, message).hex
        end)
        """
    )
    fired = await runtime.fire("sign", "password", "your message")
    mac = hmac.new(b"s3cret", b"your message", "sha256").hexdigest()
    assert (fired.status, fired.value) == ("ok", f"s3cret {mac}")
