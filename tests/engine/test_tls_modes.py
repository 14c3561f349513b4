"""SPEC 2.1, 2.2, 5.2: what each `enable_tls` mode does against each kind of server.

Every row of TABLE is one delivery through the engine to a real aiosmtpd server on a real
socket; the server notes whether each message it accepted came over TLS. The client trusts a
trustme CA through SSL_CERT_FILE (read by `ssl.create_default_context`, which
`kumoclient.smtp.opening.tls_context` caches, so the cache is cleared around each test).

Outcomes:
  TLS        delivered over STARTTLS (the server saw the message on a TLS connection)
  CLEAR      delivered in clear text, STARTTLS never sent
  RECONNECT  STARTTLS sent and failed, the client reconnected and delivered in clear text
  FAILS      connection-phase failure at `starttls`: alone, a TransientFailure
             `400 failed to connect to any candidate hosts: [127.0.0.1]:port: starttls: ...`;
             with a good host listed next, that host delivers the message in the same attempt
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session

from kumoclient.configs import EgressPathConfig, TlsMode
from kumoclient.engine.engine import Engine
from kumoclient.smtp import Session as ClientSession
from kumoclient.smtp import Target
from kumoclient.smtp.opening import tls_context as _tls_context
from tests.engine.conftest import MakeEngine, ScriptedMX, next_record

# --- the table ---------------------------------------------------------------------------

SERVERS = {
    "trusted": "offers STARTTLS; certificate for 127.0.0.1 from the CA the client trusts",
    "untrusted": "offers STARTTLS; certificate for 127.0.0.1 from a CA the client does not know",
    "wrong_name": "offers STARTTLS; certificate from the trusted CA, for mx.other.test only",
    "no_starttls": "does not offer STARTTLS",
    "refuses": "offers STARTTLS, answers it `454 4.7.0 TLS not available`",
    "broken": "offers STARTTLS, answers 220, then answers the TLS ClientHello in clear text",
    "stalls": "offers STARTTLS, answers 220, then never answers the ClientHello",
}

TLS, CLEAR, RECONNECT, FAILS = "TLS", "CLEAR", "RECONNECT", "FAILS"

NOT_TRUSTED = "certificate verify failed: unable to get local issuer certificate"
WRONG_NAME = "certificate verify failed: IP address mismatch"
NOT_OFFERED = "STARTTLS is not advertised"
REFUSED = "454 4.7.0 TLS not available"
NOT_TLS = "[SSL: WRONG_VERSION_NUMBER] wrong version number"
STALLED = "timed out after 1.5s"  # like `banner: timed out after 1s`


@dataclass(frozen=True)
class Row:
    """`mode` against a `server` (a key of SERVERS) → `outcome`; `reason` for FAILS."""

    mode: str
    server: str
    outcome: str
    reason: str = ""


TABLE = [
    # Opportunistic: STARTTLS when offered, the certificate must verify; a failure moves on
    Row("Opportunistic", "trusted", TLS),
    Row("Opportunistic", "untrusted", FAILS, NOT_TRUSTED),
    Row("Opportunistic", "wrong_name", FAILS, WRONG_NAME),
    Row("Opportunistic", "no_starttls", CLEAR),
    Row("Opportunistic", "refuses", FAILS, REFUSED),
    Row("Opportunistic", "broken", FAILS, NOT_TLS),
    Row("Opportunistic", "stalls", FAILS, STALLED),
    # OpportunisticInsecure: STARTTLS when offered, no verification; a failure → clear text
    Row("OpportunisticInsecure", "trusted", TLS),
    Row("OpportunisticInsecure", "untrusted", TLS),
    Row("OpportunisticInsecure", "wrong_name", TLS),
    Row("OpportunisticInsecure", "no_starttls", CLEAR),
    Row("OpportunisticInsecure", "refuses", RECONNECT),
    Row("OpportunisticInsecure", "broken", RECONNECT),
    Row("OpportunisticInsecure", "stalls", RECONNECT),
    # Required: STARTTLS must be offered and succeed, the certificate must verify
    Row("Required", "trusted", TLS),
    Row("Required", "untrusted", FAILS, NOT_TRUSTED),
    Row("Required", "wrong_name", FAILS, WRONG_NAME),
    Row("Required", "no_starttls", FAILS, NOT_OFFERED),
    Row("Required", "refuses", FAILS, REFUSED),
    Row("Required", "broken", FAILS, NOT_TLS),
    Row("Required", "stalls", FAILS, STALLED),
    # RequiredInsecure: STARTTLS must be offered and succeed, no verification
    Row("RequiredInsecure", "trusted", TLS),
    Row("RequiredInsecure", "untrusted", TLS),
    Row("RequiredInsecure", "wrong_name", TLS),
    Row("RequiredInsecure", "no_starttls", FAILS, NOT_OFFERED),
    Row("RequiredInsecure", "refuses", FAILS, REFUSED),
    Row("RequiredInsecure", "broken", FAILS, NOT_TLS),
    Row("RequiredInsecure", "stalls", FAILS, STALLED),
    # Disabled: never STARTTLS, whatever the server offers
    Row("Disabled", "trusted", CLEAR),
    Row("Disabled", "untrusted", CLEAR),
    Row("Disabled", "wrong_name", CLEAR),
    Row("Disabled", "no_starttls", CLEAR),
    Row("Disabled", "refuses", CLEAR),
    Row("Disabled", "broken", CLEAR),
    Row("Disabled", "stalls", CLEAR),
]


def params(rows: list[Row]) -> list[object]:
    """The rows as parameters, with readable ids."""
    return [pytest.param(row, id=f"{row.mode}-{row.server}-{row.outcome}") for row in rows]


# --- certificates ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    trusted_ca: trustme.CA
    contexts: dict[str, ssl.SSLContext]  # server kind → the server's TLS context


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture(scope="module")
def pki() -> Pki:
    trusted, unknown = trustme.CA(), trustme.CA()
    good = _server_context(trusted.issue_cert("127.0.0.1"))
    contexts = {
        "trusted": good,
        "untrusted": _server_context(unknown.issue_cert("127.0.0.1")),
        "wrong_name": _server_context(trusted.issue_cert("mx.other.test")),
        "refuses": good,
        "broken": good,
        "stalls": good,
        # not in the table: for an mx_list entry { name = 'mx.tls.test', addr = ... }
        "named": _server_context(trusted.issue_cert("mx.tls.test")),
    }
    return Pki(trusted, contexts)


@pytest.fixture(autouse=True)
def trust(pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The client trusts the trusted CA (SSL_CERT_FILE), for this test only."""
    bundle = tmp_path / "trusted-ca.pem"
    pki.trusted_ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    _tls_context.cache_clear()
    yield
    _tls_context.cache_clear()


# --- servers -----------------------------------------------------------------------------


class TlsMX(ScriptedMX):
    """ScriptedMX (aiosmtpd) with STARTTLS per server kind.

    `tls_seen` holds, per accepted message, `(TLS version, cipher)` of its connection or None
    for clear text; `starttls` counts the STARTTLS commands received.
    """

    def __init__(self, kind: str, context: ssl.SSLContext | None) -> None:
        super().__init__()
        self.kind = kind
        self.context = context
        self.tls_seen: list[tuple[str, str] | None] = []
        self.starttls = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _TlsSMTP(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        tls = None
        if session.ssl is not None:
            ssl_object = session.ssl["ssl_object"]
            tls = (ssl_object.version(), ssl_object.cipher()[0])
        self.tls_seen.append(tls)
        return await super().handle_DATA(server, session, envelope)


class _TlsSMTP(SMTP):
    def __init__(self, mx: TlsMX) -> None:
        super().__init__(
            mx,
            hostname="mx.test",
            decode_data=False,
            tls_context=mx.context,
            require_starttls=False,
        )
        self.mx = mx

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None:  # not the TLS layer after STARTTLS
            self.mx.connections += 1
        super().connection_made(transport)

    async def smtp_STARTTLS(self, arg: str) -> None:
        self.mx.starttls += 1
        if self.mx.kind == "refuses":
            await self.push("454 4.7.0 TLS not available")
            return
        if self.mx.kind == "broken":
            await self.push("220 2.0.0 Ready to start TLS")
            await self._reader.read(1)  # the ClientHello has begun to arrive
            assert self.transport is not None
            self.transport.write(b"500 5.5.2 Error: command not recognized\r\n")
            self.transport.close()
            return
        if self.mx.kind == "stalls":
            await self.push("220 2.0.0 Ready to start TLS")
            await self._reader.read()  # until the client gives up
            return
        await super().smtp_STARTTLS(arg)


MakeServer = Callable[[str], Awaitable[TlsMX]]


@pytest.fixture
async def servers(pki: Pki) -> AsyncIterator[MakeServer]:
    started: list[TlsMX] = []

    async def make(kind: str) -> TlsMX:
        server = TlsMX(kind, pki.contexts.get(kind))
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


# --- policy ------------------------------------------------------------------------------


def literal(server: TlsMX) -> str:
    """The mx_list entry `[127.0.0.1]:port` as a Lua string."""
    return json.dumps(f"[127.0.0.1]:{server.port}")


def tls_policy(path: Path, hosts: list[str], mode: str, starttls_timeout: str = "2s") -> Path:
    """Deliver to `hosts` (Lua mx_list entries) with `enable_tls = mode` and short timeouts."""
    path.write_text(f"""
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    retry_interval = '1 hour',
    protocol = {{ smtp = {{ mx_list = {{ {", ".join(hosts)} }} }} }},
  }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{
    prohibited_hosts = {{}}, enable_tls = {json.dumps(mode)}, idle_timeout = '1s',
    connect_timeout = '2s', banner_timeout = '2s', ehlo_timeout = '2s',
    starttls_timeout = '{starttls_timeout}', mail_from_timeout = '2s', rcpt_to_timeout = '2s',
    data_timeout = '2s', data_dot_timeout = '2s', rset_timeout = '2s',
  }}
end)
""")
    return path


async def start_and_submit(engine: Engine) -> str:
    """Start the engine and submit one message; its id."""
    await engine.start()
    [message_id] = await engine.submit(
        "a@example.com", ["b@example.net"], b"Subject: tls\r\n\r\nhello\r\n"
    )
    return message_id


def starttls_timeout(server: str) -> str:
    """A stalled handshake costs the STARTTLS timeout: shorter there, but long enough for
    the next (good) host's handshake on a loaded machine, under the same setting."""
    return "1500ms" if server == "stalls" else "3s"


def assert_tls(seen: tuple[str, str] | None) -> None:
    assert seen is not None, "the message came in clear text"
    version, cipher = seen
    assert version in ("TLSv1.2", "TLSv1.3")
    assert cipher


# --- tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("row", params(TABLE))
async def test_enable_tls_mode_against_a_server(
    engines: MakeEngine, tmp_path: Path, servers: MakeServer, row: Row
) -> None:
    server = await servers(row.server)
    policy = tls_policy(
        tmp_path / "p.lua", [literal(server)], row.mode, starttls_timeout(row.server)
    )
    engine = engines(policy)
    message_id = await start_and_submit(engine)
    if row.outcome == FAILS:
        record = await next_record(engine, "TransientFailure", message_id)
        response = record["response"]
        assert response["code"] == 400
        assert response["enhanced_code"] is None
        assert response["command"] is None
        prefix = f"failed to connect to any candidate hosts: [127.0.0.1]:{server.port}: starttls: "
        assert response["content"].startswith(prefix)
        assert row.reason in response["content"]
        assert server.received == []
        assert server.connections == 1
        return
    async with asyncio.timeout(10):
        record = await engine.outcome(message_id)
    assert record["type"] == "Delivery"
    assert record["peer_address"] == {"name": "127.0.0.1", "addr": server.address}
    [seen] = server.tls_seen
    if row.outcome == TLS:
        assert_tls(seen)
        assert (server.starttls, server.connections) == (1, 1)
    elif row.outcome == CLEAR:
        assert seen is None
        assert (server.starttls, server.connections) == (0, 1)
    else:  # RECONNECT: the failed STARTTLS connection is dropped, the next one stays clear
        assert seen is None
        assert (server.starttls, server.connections) == (1, 2)


@pytest.mark.parametrize("row", params([row for row in TABLE if row.outcome == FAILS]))
async def test_a_starttls_failure_moves_on_to_the_next_host(
    engines: MakeEngine, tmp_path: Path, servers: MakeServer, row: Row
) -> None:
    bad = await servers(row.server)
    good = await servers("trusted")
    hosts = [literal(bad), literal(good)]
    engine = engines(tls_policy(tmp_path / "p.lua", hosts, row.mode, starttls_timeout(row.server)))
    message_id = await start_and_submit(engine)
    async with asyncio.timeout(10):
        record = await engine.outcome(message_id)
    assert record["type"] == "Delivery"
    assert record["peer_address"]["addr"] == good.address
    assert record["num_attempts"] == 0  # the same attempt
    assert bad.received == []
    assert bad.connections == 1
    [seen] = good.tls_seen
    assert_tls(seen)


@pytest.mark.parametrize("mode", ["Opportunistic", "Required"])
async def test_the_certificate_is_checked_against_the_name_of_an_mx_list_entry(
    engines: MakeEngine, tmp_path: Path, servers: MakeServer, mode: str
) -> None:
    """`{ name = 'mx.tls.test', addr = ... }`: the certificate is for the name, not the address."""
    server = await servers("named")
    entry = f"{{ name = 'mx.tls.test', addr = {json.dumps(server.address)} }}"
    engine = engines(tls_policy(tmp_path / "p.lua", [entry], mode))
    message_id = await start_and_submit(engine)
    async with asyncio.timeout(10):
        record = await engine.outcome(message_id)
    assert record["type"] == "Delivery"
    assert record["peer_address"] == {"name": "mx.tls.test", "addr": server.address}
    [seen] = server.tls_seen
    assert_tls(seen)


async def test_the_delivery_record_names_the_tls_version_and_cipher(
    engines: MakeEngine, tmp_path: Path, servers: MakeServer
) -> None:
    server = await servers("trusted")
    engine = engines(tls_policy(tmp_path / "p.lua", [literal(server)], "Required"))
    message_id = await start_and_submit(engine)
    async with asyncio.timeout(10):
        record = await engine.outcome(message_id)
    [seen] = server.tls_seen
    assert seen is not None
    assert (record.get("tls_protocol_version"), record.get("tls_cipher")) == seen


@pytest.mark.parametrize("mode", [TlsMode.OPPORTUNISTIC, TlsMode.REQUIRED_INSECURE])
async def test_the_client_session_knows_the_tls_version_and_cipher(
    servers: MakeServer, mode: TlsMode
) -> None:
    """What the Delivery record should carry is known to kumoclient.smtp.Session."""
    server = await servers("trusted")
    config = EgressPathConfig(enable_tls=mode, connect_timeout=2, banner_timeout=2)
    target = Target("127.0.0.1", "127.0.0.1", server.port)
    session = await ClientSession.open(target, config, "client.test")
    try:
        exchange = await session.send("a@example.com", "b@example.net", b"Subject: x\r\n\r\nx\r\n")
    finally:
        await session.close()
    assert exchange.kind == "accepted"
    [seen] = server.tls_seen
    assert_tls(seen)
    assert session.tls == seen
