"""The HTTP listener's certificate from each KeySource form: a file, `{key_data=...}`, and a
Vault secret read when the daemon starts the listener (against an aiohttp server on loopback
answering Vault's KV v2 read: a scripted fake, no Vault server can be installed here); and a
self-signed one when neither certificate nor key is given."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
import trustme

from kumoclient.configs import HttpListenerConfig
from kumoclient.daemon.daemon import _read_vault
from kumoclient.errors import ConfigError
from kumoclient.http import Handlers, HttpServer
from kumoclient.http.tls import self_signed
from tests.vault_server import vault_kv2

TOKEN = "hvs.tls-token"
LOOPBACK = HttpListenerConfig(listen="127.0.0.1:0", use_tls=True)


@pytest.fixture
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def issued(authority: trustme.CA) -> trustme.LeafCert:
    return authority.issue_cert("localhost")


async def liveness(config: HttpListenerConfig, context: ssl.SSLContext) -> int:
    """Start a listener with `config`, ask its liveness over https as `localhost`."""
    server = HttpServer(config, Handlers())
    await server.start()
    try:
        host, port = server.addresses[0]
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"https://{host}:{port}/api/check-liveness/v1",
                ssl=context,
                server_hostname="localhost",
            ) as resp,
        ):
            return resp.status
    finally:
        await server.stop()


def trusting(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


async def test_key_data_serves_the_certificate_given_inline(
    authority: trustme.CA, issued: trustme.LeafCert
) -> None:
    config = replace(
        LOOPBACK,
        tls_certificate=issued.cert_chain_pems[0].bytes(),
        tls_private_key=issued.private_key_pem.bytes(),
    )
    assert await liveness(config, trusting(authority)) == 200


@pytest.fixture
async def vault(issued: trustme.LeafCert) -> AsyncIterator[str]:
    secrets = {
        "tls/localhost.cert": {"certificate": issued.cert_chain_pems[0].bytes().decode()},
        "tls/localhost.key": {"key": issued.private_key_pem.bytes().decode()},
    }

    async with vault_kv2(TOKEN, secrets) as address:
        yield address


async def test_vault_keysources_are_read_when_the_listener_starts(
    authority: trustme.CA, vault: str
) -> None:
    """The reference page's Vault form, `vault_key` naming the certificate's field."""
    common = (("vault_address", vault), ("vault_mount", "secret"), ("vault_token", TOKEN))
    config = replace(
        LOOPBACK,
        tls_certificate=(
            *common,
            ("vault_key", "certificate"),
            ("vault_path", "tls/localhost.cert"),
        ),
        tls_private_key=(*common, ("vault_path", "tls/localhost.key")),
    )
    with pytest.raises(ConfigError, match="a Vault KeySource must be read before"):
        HttpServer(config, Handlers())
    assert await liveness(await _read_vault(config), trusting(authority)) == 200


async def test_a_missing_vault_secret_is_an_error_naming_the_key(vault: str) -> None:
    source = (
        ("vault_address", vault),
        ("vault_mount", "secret"),
        ("vault_path", "tls/nowhere"),
        ("vault_token", TOKEN),
    )
    config = replace(LOOPBACK, tls_certificate=source, tls_private_key=source)
    with pytest.raises(ConfigError, match=r"start_http_listener: tls_certificate: .*HTTP 404"):
        await _read_vault(config)


async def test_without_certificate_and_key_a_self_signed_one_for_the_hostname() -> None:
    """A new certificate for `hostname` at each start; a client that trusts it connects."""
    certificate, _ = self_signed("localhost")
    other, _ = self_signed("localhost")
    assert certificate != other
    server = HttpServer(replace(LOOPBACK, hostname="localhost"), Handlers())
    await server.start()
    try:
        host, port = server.addresses[0]
        served = await asyncio.to_thread(ssl.get_server_certificate, (host, port))
        context = ssl.create_default_context(cadata=served)
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"https://{host}:{port}/api/check-liveness/v1",
                ssl=context,
                server_hostname="localhost",
            ) as resp,
        ):
            assert resp.status == 200
    finally:
        await server.stop()
