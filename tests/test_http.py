"""The HTTP listener: inject API (KumoMTA's shape), access control, limits, errors, liveness.

Most tests run the listener in the test's own loop on a real socket, over a real Reception,
Spool and delivery log (no delivery engine: nothing tries to reach example.net); one runs
`kumoclient run` as a process.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import textwrap
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kumoclient.configs import HttpListenerConfig, InitConfig
from kumoclient.daemon.daemon import http_handlers
from kumoclient.daemon.layout import DaemonOptions, layout
from kumoclient.engine.reception import Reception
from kumoclient.errors import ConfigError, HttpError, SpoolError
from kumoclient.http import Client, Handlers, HttpServer, Route
from kumoclient.logs import RecordLog
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.records import AuthInfo, SpooledMessage
from kumoclient.spool import Spool
from tests.conftest import record_writer
from tests.daemon_process import DaemonProcess, free_port

POLICY = """
kumo.on('http_server_validate_auth_basic', function(user, password)
  return user == 'api' and password == 's3cret'
end)

kumo.on('http_message_generated', function(msg)
  msg:import_headers { { name = 'X-Tenant', target = 'tenant' } }
  msg:set_meta('campaign', 'http-test')
  if msg:recipient().email == 'refused@example.net' then
    kumo.reject(550, '5.7.1 not this one')
  end
  if msg:recipient().email == 'boom@example.net' then
    error('policy bug')
  end
end)
"""

GIF = "R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
LOOPBACK = HttpListenerConfig(listen="127.0.0.1:0")


@dataclass
class Site:
    """A running listener over a real spool, and a client session for it."""

    spool: Spool
    reception: Reception
    session: aiohttp.ClientSession
    url: str

    async def post(
        self, body: object, *, raw: bytes | None = None, **kwargs: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        data = raw if raw is not None else json.dumps(body).encode()
        async with self.session.post(f"{self.url}/api/inject/v1", data=data, **kwargs) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if text else None, resp

    def messages(self) -> list[SpooledMessage]:
        return sorted(self.spool.enumerate(quarantine=False), key=lambda m: m.recipient)


Serve = Callable[..., Awaitable[Site]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """`await serve(config=..., handlers=...)`: a listener on a free loopback port."""
    policy = tmp_path / "policy.lua"
    policy.write_text(textwrap.dedent(POLICY))
    spool = Spool(tmp_path / "spool")
    await spool.start()
    records = RecordLog(tmp_path / "logs")
    await records.open()
    holder = PolicyHolder(policy, memo=MemoRegistry())
    reception = Reception(holder, spool, record_writer(spool, records))
    servers: list[HttpServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(
        config: HttpListenerConfig = LOOPBACK, handlers: Handlers | None = None
    ) -> Site:
        server = HttpServer(config, handlers or http_handlers(holder, reception))
        await server.start()
        servers.append(server)
        host, port = server.addresses[0]
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Site(spool, reception, session, f"http://{host}:{port}")

    try:
        yield start
    finally:
        for session in sessions:
            await session.close()
        for server in servers:
            await server.stop()
        await spool.close()
        await records.close()


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "envelope_sender": "bounces@example.com",
        "content": "Subject: hello\n\nHello there\n",
        "recipients": [{"email": "one@example.net"}],
    }
    body.update(overrides)
    return body


# --- must-show: substitutions per recipient -------------------------------------------------


async def test_three_recipients_get_their_own_substituted_message(serve: Serve) -> None:
    site = await serve()
    status, body, _ = await site.post(
        request(
            content="From: shop@example.com\nSubject: Hi {{ name }}\n\n"
            "Dear {{ name }}, your code is {{ code }} ({{ season }}).\n",
            substitutions={"season": "fall", "code": "none"},
            recipients=[
                {"email": "ann@example.net", "name": "Ann", "substitutions": {"code": "A-1"}},
                {"email": "bob@example.net", "name": "Bob", "substitutions": {"code": 2}},
                {"email": "cy@example.org", "substitutions": {"season": "spring"}},
            ],
        )
    )
    assert status == 200, body
    assert body == {"success_count": 3, "fail_count": 0, "failed_recipients": [], "errors": []}
    messages = site.messages()
    assert [m.recipient for m in messages] == [
        "ann@example.net",
        "bob@example.net",
        "cy@example.org",
    ]
    contents = [site.spool.content(m.id) for m in messages]
    assert contents == [
        b"From: shop@example.com\r\nSubject: Hi Ann\r\n\r\nDear Ann, your code is A-1 (fall).\r\n",
        b"From: shop@example.com\r\nSubject: Hi Bob\r\n\r\nDear Bob, your code is 2 (fall).\r\n",
        # no name given: `name` is undefined and renders empty, as in KumoMTA
        b"From: shop@example.com\r\nSubject: Hi \r\n\r\nDear , your code is none (spring).\r\n",
    ]
    for message in messages:
        assert message.sender == "bounces@example.com"
        assert message.reception_protocol == "HTTP"
        # http_message_generated ran for each: the policy's meta is there
        assert message.meta == {
            "campaign": "http-test",
            "received_from": "127.0.0.1",
            "http_auth": "127.0.0.1",  # KumoMTA's: the user, or the trusted client's address
            "reception_protocol": "HTTP",
        }


async def test_static_dialect_leaves_the_content_alone(serve: Serve) -> None:
    site = await serve()
    status, body, _ = await site.post(
        request(content="Subject: {{ name }}\r\n\r\n{% raw %}\r\n", template_dialect="Static")
    )
    assert status == 200, body
    [message] = site.messages()
    assert site.spool.content(message.id) == b"Subject: {{ name }}\r\n\r\n{% raw %}\r\n"


# --- the builder --------------------------------------------------------------------------


async def test_builder_content_makes_a_valid_multipart_message(serve: Serve) -> None:
    site = await serve()
    status, body, _ = await site.post(
        request(
            content={
                "subject": "Your order, {{ name }} ✓",
                "text_body": "Hello {{ name }},\nyour order {{ order }} has shipped. Merci à vous\n",
                "html_body": '<p>Hello {{ name }}</p><img src="cid:logo">',
                "from": {"email": "shop@example.com", "name": "The Shop"},
                "reply_to": {"email": "help@example.com"},
                "headers": {"X-Tenant": "acme", "X-Order": "{{ order }}"},
                "attachments": [
                    {
                        "data": "id,total\n{{ not templated }}\n",
                        "content_type": "text/csv",
                        "file_name": "order.csv",
                    },
                    {
                        "data": GIF,
                        "base64": True,
                        "content_type": "image/gif",
                        "content_id": "logo",
                    },
                ],
            },
            recipients=[
                {"email": "ann@example.net", "name": "Ann <A&B>", "substitutions": {"order": 42}}
            ],
        )
    )
    assert status == 200, body
    assert body["success_count"] == 1
    [message] = site.messages()
    raw = site.spool.content(message.id)
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed.defects == []
    assert parsed["Subject"] == "Your order, Ann <A&B> ✓"
    assert parsed["From"] == "The Shop <shop@example.com>"
    assert parsed["Reply-To"] == "help@example.com"
    assert parsed["To"].addresses[0].addr_spec == "ann@example.net"
    assert parsed["To"].addresses[0].display_name == "Ann <A&B>"
    assert parsed["X-Order"] == "42"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["Message-ID"].endswith("@example.com>")
    assert parsed["Date"].datetime.timestamp() == pytest.approx(time.time(), abs=60)
    assert parsed.get_content_type() == "multipart/mixed"
    types = [part.get_content_type() for part in parsed.walk()]
    assert types == [
        "multipart/mixed",
        "multipart/related",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "image/gif",
        "text/csv",
    ]
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None
    assert html is not None
    assert text.get_content() == "Hello Ann <A&B>,\r\nyour order 42 has shipped. Merci à vous\r\n"
    assert text["Content-Transfer-Encoding"] == "quoted-printable"  # 7-bit safe
    # values substituted into html_body are HTML-escaped
    assert "<p>Hello Ann &lt;A&amp;B&gt;</p>" in html.get_content()
    parts = {part.get_content_type(): part for part in parsed.walk()}
    assert parts["image/gif"]["Content-ID"] == "<logo>"
    assert parts["image/gif"].get_content() == base64.b64decode(GIF)
    assert parts["text/csv"].get_filename() == "order.csv"
    assert parts["text/csv"].get_payload(decode=True) == b"id,total\n{{ not templated }}\n"
    # the policy imported X-Tenant from the built message
    assert message.meta["tenant"] == "acme"


async def test_builder_with_only_a_text_body_is_a_single_part(serve: Serve) -> None:
    site = await serve()
    status, body, _ = await site.post(request(content={"text_body": "just text"}))
    assert status == 200, body
    [message] = site.messages()
    parsed = email.message_from_bytes(site.spool.content(message.id), policy=email.policy.default)
    assert parsed.get_content_type() == "text/plain"
    assert parsed["To"] == "one@example.net"
    assert isinstance(parsed, EmailMessage)
    assert parsed.get_content() == "just text\r\n"


# --- bad input: a specific 4xx, nothing spooled ----------------------------------------------

BAD_REQUESTS: list[tuple[str, object, str]] = [
    ("malformed-json", b'{"envelope_sender": "a@example.com", ', "malformed JSON: "),
    ("not-an-object", [1, 2], "request: expected an object, got a list"),
    (
        "no-envelope-sender",
        {"content": "Subject: x\n\ny\n", "recipients": [{"email": "b@example.net"}]},
        "envelope_sender: missing",
    ),
    ("sender-not-a-string", request(envelope_sender=7), "envelope_sender: expected a string"),
    (
        "recipients-not-a-list",
        request(recipients="one@example.net"),
        "recipients: expected a list, got a string",
    ),
    ("recipients-empty", request(recipients=[]), "recipients: the list is empty"),
    (
        "recipient-without-email",
        request(recipients=[{"name": "Ann"}]),
        "recipients[0].email: missing",
    ),
    (
        "invalid-address",
        request(recipients=[{"email": "ok@example.net"}, {"email": "no-at-sign"}]),
        "recipients[1].email: invalid address 'no-at-sign': expected local-part@domain",
    ),
    (
        "address-with-two-at-signs",
        request(recipients=[{"email": "a@b@example.net"}]),
        "recipients[0].email: invalid address 'a@b@example.net': expected local-part@domain",
    ),
    (
        "address-with-crlf",
        request(recipients=[{"email": "a@example.net\r\nRCPT TO:<b@x>"}]),
        "recipients[0].email: invalid address",
    ),
    (
        "invalid-sender",
        request(envelope_sender="bounces at example.com"),
        "envelope_sender: invalid address",
    ),
    (
        "template-syntax-error",
        request(content="Subject: {{ name }\n\nhi\n"),
        "content: template syntax error at line 1: ",
    ),
    (
        "builder-template-syntax-error",
        request(content={"text_body": "ok", "html_body": "{% if %}"}),
        "content.html_body: template syntax error at line 1",
    ),
    (
        "template-error-for-one-recipient",
        request(
            content="Subject: x\n\n{{ 10 / d }}\n",
            recipients=[
                {"email": "a@example.net", "substitutions": {"d": 2}},
                {"email": "b@example.net", "substitutions": {"d": 0}},
            ],
        ),
        "recipient b@example.net: content: template error: ZeroDivisionError",
    ),
    (
        "sandboxed",
        request(content="Subject: x\n\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n"),
        "template error: ",
    ),
    (
        "template-makes-a-huge-string",
        request(content="Subject: x\n\n{{ 'x' * 10**9 }}\n"),
        "template stopped: '*' would make 1000000000 items",
    ),
    (
        "content-not-a-message",
        request(content="Hello there, no headers"),
        "content: not an RFC 5322 message",
    ),
    ("content-wrong-type", request(content=42), "content: expected a string or an object"),
    (
        "builder-without-body",
        request(content={"subject": "x"}),
        "content: at least one of text_body and html_body must be given",
    ),
    (
        "bad-base64",
        request(
            content={
                "text_body": "x",
                "attachments": [{"data": "!!", "base64": True, "content_type": "image/gif"}],
            }
        ),
        "content.attachments[0].data: invalid base64",
    ),
    (
        "header-injection",
        request(
            content={"text_body": "x", "headers": {"X-Note": "{{ note }}"}},
            substitutions={"note": "a\r\nBcc: victim@example.org"},
        ),
        "content.headers.X-Note: a header value must not contain CR, LF or NUL",
    ),
    ("unknown-field", request(recipient=[]), "request: unknown field 'recipient'"),
    (
        "builder-non-ascii-address",
        request(content={"text_body": "x"}, recipients=[{"email": "jürgen@example.net"}]),
        "the message builder writes ASCII addresses only",
    ),
    (
        "unsupported-dialect",
        request(template_dialect="Handlebars"),
        "template_dialect: 'Handlebars' is not supported",
    ),
]


@pytest.mark.parametrize(
    ("body", "error"),
    [(body, error) for _, body, error in BAD_REQUESTS],
    ids=[name for name, _, _ in BAD_REQUESTS],
)
async def test_bad_request_is_400_with_the_reason_and_nothing_spooled(
    serve: Serve, body: object, error: str
) -> None:
    site = await serve()
    raw = body if isinstance(body, bytes) else None
    status, answer, _ = await site.post(body, raw=raw)
    assert status == 400, answer
    assert set(answer) == {"error"}
    assert error in answer["error"]
    assert site.spool.ids() == []
    assert site.reception.accepted == 0


async def test_body_over_the_limit_is_413_and_nothing_spooled(serve: Serve) -> None:
    site = await serve(replace(LOOPBACK, request_body_limit=1024))
    big = request(content="Subject: big\n\n" + "x" * 2000 + "\n")
    status, answer, _ = await site.post(big)
    assert status == 413
    assert answer == {
        "error": "request body too large: the limit is 1024 bytes (request_body_limit)"
    }

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: caught while reading
        data = json.dumps(big).encode()
        for start in range(0, len(data), 500):
            yield data[start : start + 500]

    async with site.session.post(f"{site.url}/api/inject/v1", data=chunks()) as resp:
        assert resp.status == 413
        assert "request_body_limit" in (await resp.json())["error"]
    assert site.spool.ids() == []
    # a body under the limit still goes through
    status, answer, _ = await site.post(request())
    assert status == 200, answer


async def test_wrong_method_and_unknown_path_answer_json(serve: Serve) -> None:
    site = await serve()
    async with site.session.get(f"{site.url}/api/inject/v1") as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        assert await resp.json() == {"error": "Method Not Allowed"}
    async with site.session.get(f"{site.url}/nowhere") as resp:
        assert resp.status == 404
        assert await resp.json() == {"error": "Not Found"}


# --- policy answers -------------------------------------------------------------------------


async def test_a_recipient_the_policy_rejects_is_reported_and_the_others_spooled(
    serve: Serve,
) -> None:
    site = await serve()
    status, body, _ = await site.post(
        request(
            recipients=[
                {"email": "one@example.net"},
                {"email": "refused@example.net"},
                {"email": "two@example.net"},
            ]
        )
    )
    assert status == 200, body
    assert body == {
        "success_count": 2,
        "fail_count": 1,
        "failed_recipients": ["refused@example.net"],
        "errors": ["refused@example.net: 550 5.7.1 not this one"],
    }
    assert [m.recipient for m in site.messages()] == ["one@example.net", "two@example.net"]


async def test_a_failing_policy_is_500_and_nothing_spooled(serve: Serve) -> None:
    site = await serve()
    status, body, _ = await site.post(
        request(recipients=[{"email": "one@example.net"}, {"email": "boom@example.net"}])
    )
    assert status == 500
    assert "http_message_generated failed" in body["error"]
    assert "nothing was spooled" in body["error"]
    assert site.spool.ids() == []


async def test_a_full_spool_is_503_and_nothing_acknowledged(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = await serve()

    async def full(messages: list[SpooledMessage], content: bytes, *, fresh: bool = True) -> None:
        raise SpoolError("No space left on device")

    monkeypatch.setattr(site.spool, "store", full)
    status, body, _ = await site.post(request())
    assert status == 503
    assert "the spool cannot take the messages" in body["error"]
    assert "Insufficient system storage" in body["error"]
    monkeypatch.undo()
    assert site.spool.ids() == []


# --- who may call ---------------------------------------------------------------------------


async def test_clients_outside_trusted_hosts_need_basic_auth_the_policy_accepts(
    serve: Serve,
) -> None:
    # loopback is left out, so this test's client counts as a remote one
    site = await serve(replace(LOOPBACK, trusted_hosts=("10.0.0.0/8",)))
    status, body, resp = await site.post(request())
    assert status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="kumoclient"'
    assert "authentication required" in body["error"]

    status, body, resp = await site.post(request(), headers=basic("api", "wrong"))
    assert status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="kumoclient"'
    assert body == {"error": "invalid credentials"}

    status, body, resp = await site.post(
        request(), headers={"Authorization": "Basic !!not-base64!!"}
    )
    assert status == 401
    assert "malformed Authorization header" in body["error"]
    assert site.spool.ids() == []

    status, body, _ = await site.post(request(), headers=basic("api", "s3cret"))
    assert status == 200, body
    assert body["success_count"] == 1
    [message] = site.messages()
    assert message.meta["http_auth"] == "api"

    # metrics sit behind the same check; liveness is open
    async with site.session.get(f"{site.url}/metrics") as resp:
        assert resp.status == 401
    async with site.session.get(f"{site.url}/api/check-liveness/v1") as resp:
        assert resp.status == 200


async def test_a_failing_auth_check_is_500_with_a_clear_message(serve: Serve) -> None:
    def broken(user: str, password: str) -> bool:
        raise RuntimeError("http_server_validate_auth_basic event failed: boom")

    site = await serve(replace(LOOPBACK, trusted_hosts=()), Handlers(validate_auth=broken))
    async with site.session.get(f"{site.url}/metrics", headers=basic("api", "x")) as resp:
        assert resp.status == 500
        body = await resp.json()
    assert body["error"].startswith("authentication check failed")
    assert "boom" in body["error"]


async def test_without_an_auth_handler_remote_clients_are_refused(serve: Serve) -> None:
    site = await serve(replace(LOOPBACK, trusted_hosts=()), Handlers())
    async with site.session.get(f"{site.url}/metrics", headers=basic("api", "s3cret")) as resp:
        assert resp.status == 401


# --- liveness, metrics, extra routes -----------------------------------------------------------


async def test_liveness(serve: Serve) -> None:
    site = await serve()
    async with site.session.get(f"{site.url}/api/check-liveness/v1") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}


async def test_metrics_come_from_the_handler_or_are_404(serve: Serve) -> None:
    site = await serve(handlers=Handlers())
    async with site.session.get(f"{site.url}/metrics") as resp:
        assert resp.status == 404
        assert await resp.json() == {"error": "metrics are not available"}
    exposition = b"# TYPE x counter\nx_total 1.0\n"
    site = await serve(
        handlers=Handlers(metrics=lambda: (exposition, "text/plain; version=0.0.4; charset=utf-8"))
    )
    async with site.session.get(f"{site.url}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert await resp.read() == exposition


async def test_extra_routes_get_the_access_check_and_the_client(serve: Serve) -> None:
    seen: list[Client] = []

    async def admin(request: web.Request, client: Client) -> web.StreamResponse:
        seen.append(client)
        if request.match_info["name"] == "missing":
            raise HttpError(404, "no such queue")
        return web.json_response({"queue": request.match_info["name"]})

    async def version(request: web.Request, client: Client) -> web.StreamResponse:
        return web.json_response({"version": "test"})

    routes = [
        Route("GET", "/api/admin/queue/{name}", admin),
        Route("GET", "/api/version", version, public=True),
    ]
    site = await serve(
        replace(LOOPBACK, trusted_hosts=("10.0.0.0/8",)),
        Handlers(validate_auth=lambda u, p: (u, p) == ("root", "pw"), routes=routes),
    )
    async with site.session.get(f"{site.url}/api/admin/queue/q1") as resp:
        assert resp.status == 401
    async with site.session.get(
        f"{site.url}/api/admin/queue/q1", headers=basic("root", "pw")
    ) as resp:
        assert resp.status == 200
        assert await resp.json() == {"queue": "q1"}
    async with site.session.get(
        f"{site.url}/api/admin/queue/missing", headers=basic("root", "pw")
    ) as resp:
        assert resp.status == 404
        assert await resp.json() == {"error": "no such queue"}
    async with site.session.get(f"{site.url}/api/version") as resp:
        assert resp.status == 200
    who = Client("127.0.0.1", "root", AuthInfo("127.0.0.1", (("root", "HttpBasicAuth"),)))
    assert seen == [who, who]


async def test_a_port_in_use_is_an_oserror_and_leaves_nothing_open(serve: Serve) -> None:
    site = await serve()
    port = int(site.url.rsplit(":", 1)[1])
    second = HttpServer(replace(LOOPBACK, listen=f"127.0.0.1:{port}"), Handlers())
    with pytest.raises(OSError, match="in use"):
        await second.start()
    assert second.addresses == []


async def test_use_tls_serves_https_with_the_configured_certificate(
    serve: Serve, tmp_path: Path
) -> None:
    import ssl

    import trustme

    authority = trustme.CA()
    issued = authority.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    config = replace(LOOPBACK, use_tls=True, tls_certificate=str(cert), tls_private_key=str(key))
    site = await serve(config)
    context = ssl.create_default_context()
    authority.configure_trust(context)
    async with site.session.post(
        site.url.replace("http:", "https:") + "/api/inject/v1",
        data=json.dumps(request()).encode(),
        ssl=context,
        server_hostname="localhost",
    ) as resp:
        assert resp.status == 200
    assert len(site.spool.ids()) == 1
    with pytest.raises(ConfigError, match="give tls_private_key too, or neither"):
        HttpServer(replace(LOOPBACK, use_tls=True, tls_certificate=str(cert)), Handlers())


# --- the daemon -----------------------------------------------------------------------------


def test_http_option_moves_the_first_http_listener_or_adds_one() -> None:
    options = DaemonOptions(http="0.0.0.0:8123")
    [added] = layout(options, InitConfig()).http_listeners
    assert added == HttpListenerConfig(listen="0.0.0.0:8123")
    configured = HttpListenerConfig(listen="127.0.0.1:8000", trusted_hosts=("10.0.0.0/8",))
    second = HttpListenerConfig(listen="127.0.0.1:8001")
    moved = layout(options, InitConfig(http_listeners=(configured, second))).http_listeners
    assert moved == (replace(configured, listen="0.0.0.0:8123"), second)
    assert layout(DaemonOptions(), InitConfig()).http_listeners == ()


@pytest.fixture
def http_daemon(tmp_path: Path) -> Iterator[tuple[DaemonProcess, int]]:
    port = free_port()
    policy = tmp_path / "policy.lua"
    policy.write_text(
        textwrap.dedent(
            f"""
            kumo.on('init', function()
              kumo.start_http_listener {{ listen = '127.0.0.1:{port}' }}
            end)
            kumo.on('http_message_generated', function(msg)
              msg:set_meta('tenant', 'from-http')
            end)
            """
        )
    )
    process = DaemonProcess(tmp_path / "data", policy=policy).start()
    yield process, port
    process.kill()


def _http(port: int, path: str, body: object | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        headers={"Content-Type": "application/json"},
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except ConnectionRefusedError:
            pass
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, ConnectionRefusedError):
                raise
        assert time.monotonic() < deadline, "the HTTP listener did not come up"
        time.sleep(0.05)


@pytest.mark.slow
def test_daemon_serves_the_inject_api_and_stops_cleanly(
    http_daemon: tuple[DaemonProcess, int],
) -> None:
    daemon, port = http_daemon
    assert _http(port, "/api/check-liveness/v1") == (200, {"status": "ok"})
    status, body = _http(
        port,
        "/api/inject/v1",
        request(recipients=[{"email": "a@example.net"}, {"email": "b@example.org"}]),
    )
    assert status == 200
    assert body == {"success_count": 2, "fail_count": 0, "failed_recipients": [], "errors": []}
    assert daemon.stop() == 0
    messages = list(Spool(daemon.data_dir / "spool").enumerate(quarantine=False))
    assert sorted(m.recipient for m in messages) == ["a@example.net", "b@example.org"]
    assert {m.meta["tenant"] for m in messages} == {"from-http"}
    assert {m.reception_protocol for m in messages} == {"HTTP"}
    records = [
        json.loads(line)
        for path in (daemon.data_dir / "logs").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    receptions = [r for r in records if r["type"] == "Reception"]
    assert {r["reception_protocol"] for r in receptions} == {"HTTP"}
    assert len(receptions) == 2
    stderr = daemon.stderr()
    assert "http listener started" in stderr
    assert "http listener stopped" in stderr
