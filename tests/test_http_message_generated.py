"""`http_message_generated(msg, auth_info)` as KumoMTA calls it: a real HTTP listener, a real
client, a real spool; the AuthInfo says who the client is (its address, the trusted-host group,
the Basic-auth identity, or the identities and groups the policy's auth check returned)."""

from __future__ import annotations

import base64
import json
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kumoclient.configs import HttpListenerConfig
from kumoclient.daemon.daemon import http_handlers
from kumoclient.engine.reception import Reception
from kumoclient.http.server import HttpServer
from kumoclient.logs import RecordLog
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.records import SpooledMessage
from kumoclient.spool import Spool
from tests.conftest import record_writer

POLICY = """
kumo.on('http_server_validate_auth_basic', function(user, password)
  if user == 'plain' then return password == 'pw' end
  if user == 'team' and password == 'pw' then
    return {
      identities = { { identity = 'team-member', context = 'HttpBasicAuth' } },
      groups = { 'senders', 'tenant-acme' },
    }
  end
  return false
end)

kumo.on('http_message_generated', function(msg, auth_info)
  msg:set_meta('x_auth_info', auth_info)
  for _, group in ipairs(auth_info.groups) do
    if group == 'tenant-acme' then msg:set_meta('tenant', 'acme') end
  end
end)
"""
BODY = {
    "envelope_sender": "bounces@example.com",
    "content": "Subject: hello\n\nHello there\n",
    "recipients": [{"email": "one@example.net"}],
}


@dataclass
class Site:
    spool: Spool
    url: str
    session: aiohttp.ClientSession

    async def inject(self, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.session.post(
            f"{self.url}/api/inject/v1", data=json.dumps(BODY), headers=headers or {}
        ) as resp:
            return resp.status, await resp.json()

    def messages(self) -> list[SpooledMessage]:
        return list(self.spool.enumerate(quarantine=False))


async def site(tmp_path: Path, policy: str, trusted: tuple[str, ...]) -> AsyncIterator[Site]:
    path = tmp_path / "policy.lua"
    path.write_text(textwrap.dedent(policy))
    spool = Spool(tmp_path / "spool")
    await spool.start()
    records = RecordLog(tmp_path / "logs")
    await records.open()
    holder = PolicyHolder(path, memo=MemoRegistry())
    reception = Reception(holder, spool, record_writer(spool, records))
    config = replace(HttpListenerConfig(listen="127.0.0.1:0"), trusted_hosts=trusted)
    server = HttpServer(config, http_handlers(holder, reception))
    await server.start()
    host, port = server.addresses[0]
    async with aiohttp.ClientSession() as session:
        try:
            yield Site(spool, f"http://{host}:{port}", session)
        finally:
            await server.stop()
            await spool.close()
            await records.close()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_a_trusted_client_is_its_address_and_the_trusted_group(tmp_path: Path) -> None:
    async for web in site(tmp_path, POLICY, ("127.0.0.1",)):
        status, body = await web.inject()
        assert (status, body["success_count"]) == (200, 1)
        (message,) = web.messages()
        assert message.meta["x_auth_info"] == {
            "peer_address": "127.0.0.1",
            "identities": {},  # an empty Lua table (KumoMTA's empty list)
            "groups": ["kumomta:http-listener-trusted-ip"],
        }
        assert message.meta["http_auth"] == "127.0.0.1"
        assert message.meta["reception_protocol"] == "HTTP"


async def test_basic_auth_adds_the_identity(tmp_path: Path) -> None:
    async for web in site(tmp_path, POLICY, ("10.0.0.0/8",)):
        status, _ = await web.inject(basic("plain", "pw"))
        assert status == 200
        (message,) = web.messages()
        assert message.meta["x_auth_info"] == {
            "peer_address": "127.0.0.1",
            "identities": [{"identity": "plain", "context": "HttpBasicAuth"}],
            "groups": {},
        }
        assert message.meta["http_auth"] == "plain"


async def test_an_auth_info_returned_by_the_check_gives_identities_and_groups(
    tmp_path: Path,
) -> None:
    """`http_server_validate_auth_basic` returning an AuthInfo table (KumoMTA's AuthInfo page
    example): its identities and groups reach `http_message_generated`, and the policy
    decides with them (here: the tenant)."""
    async for web in site(tmp_path, POLICY, ("127.0.0.1",)):
        status, _ = await web.inject(basic("team", "pw"))
        assert status == 200
        (message,) = web.messages()
        assert message.meta["x_auth_info"] == {
            "peer_address": "127.0.0.1",
            "identities": [{"identity": "team-member", "context": "HttpBasicAuth"}],
            "groups": ["kumomta:http-listener-trusted-ip", "senders", "tenant-acme"],
        }
        assert message.meta["tenant"] == "acme"
        assert message.meta["http_auth"] == "team-member"


async def test_credentials_of_a_trusted_client_are_checked_too(tmp_path: Path) -> None:
    async for web in site(tmp_path, POLICY, ("127.0.0.1",)):
        status, body = await web.inject(basic("plain", "wrong"))
        assert (status, body) == (401, {"error": "invalid credentials"})
        assert web.messages() == []


async def test_the_reference_page_example_is_refused_clearly(tmp_path: Path) -> None:
    """The DKIM-signing example of KumoMTA's `http_message_generated` page: kumoclient has no
    DKIM yet, so the request fails with that reason and nothing is spooled."""
    example = """
    kumo.on('http_message_generated', function(msg, auth_info)
      local signer = kumo.dkim.rsa_sha256_signer {
        domain = msg:from_header().domain,
        selector = 'default',
        headers = { 'From', 'To', 'Subject' },
        key = 'example-private-dkim-key.pem',
      }
      msg:dkim_sign(signer)
    end)
    """
    async for web in site(tmp_path, example, ("127.0.0.1",)):
        status, body = await web.inject()
        assert status == 500
        assert "http_message_generated failed" in body["error"]
        assert web.messages() == []


@pytest.mark.parametrize("answer", ["{ identities = 'x' }", "{ colour = 'red' }", "42"])
async def test_a_bad_auth_check_answer_denies(tmp_path: Path, answer: str) -> None:
    policy = f"kumo.on('http_server_validate_auth_basic', function(u, p) return {answer} end)"
    async for web in site(tmp_path, policy, ("10.0.0.0/8",)):
        status, _ = await web.inject(basic("any", "pw"))
        assert status == 401
