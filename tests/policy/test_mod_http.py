"""kumo.http through a real policy against an aiohttp server on loopback (in the test's event
loop, where the handlers' requests are served): the reference pages' examples for the client,
requests, responses, build_url and a websocket echo; pooled connections; a handler waiting for
an answer while another runs; timeouts and failures at the policy's line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from kumoclient.errors import PolicyError
from kumoclient.policy.runtime import PolicyRuntime
from tests.policy.conftest import LoadPolicy


@dataclass
class Site:
    url: str
    release: asyncio.Event = field(default_factory=asyncio.Event)
    push: asyncio.Event = field(default_factory=asyncio.Event)  # the websocket's batch
    peers: list[int] = field(default_factory=list)  # client port of each request


SITE = web.AppKey("site", Site)


async def _root(request: web.Request) -> web.Response:
    request.app[SITE].peers.append(request.transport.get_extra_info("peername")[1])
    response = web.Response(text="hello", headers={"X-Header": "value"})
    response.headers.add("Set-Cookie", "a=1")
    response.headers.add("Set-Cookie", "b=2")
    return response


async def _echo(request: web.Request) -> web.Response:
    form = await request.post() if request.content_type.startswith(("multipart", "app")) else {}
    fields = {}
    for name, value in form.items():
        if isinstance(value, web.FileField):
            fields[name] = {"file": value.filename, "data": value.file.read().decode()}
        else:
            fields[name] = value
    body = "" if form else (await request.read()).decode("latin-1")
    return web.json_response(
        {
            "method": request.method,
            "authorization": request.headers.get("Authorization"),
            "user_agent": request.headers.get("User-Agent"),
            "content_type": request.headers.get("Content-Type", ""),
            "x": request.headers.getall("X-Many", []),
            "body": body,
            "form": fields,
        }
    )


async def _encoded(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if kind == "latin1":
        return web.Response(body=b"caf\xe9", content_type="text/plain", charset="iso-8859-1")
    if kind == "bom":
        return web.Response(body=b"\xef\xbb\xbfhi", headers={"Content-Type": "text/plain"})
    return web.Response(body=b"ok \xff", headers={"Content-Type": "text/plain"})


async def _held(request: web.Request) -> web.Response:
    await request.app[SITE].release.wait()
    return web.Response(text="released")


async def _status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="")


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    """Sends `hello`; when the test says so, `a`, the bytes `b`, `c`, and closes (unless the
    client closed first: its close is answered at once)."""
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    await socket.send_str("hello")
    reader = asyncio.ensure_future(socket.receive())  # the client's close, if it comes
    pushed = asyncio.ensure_future(request.app[SITE].push.wait())
    await asyncio.wait({reader, pushed}, return_when=asyncio.FIRST_COMPLETED)
    pushed.cancel()
    if not reader.done():
        await socket.send_str("a")
        await socket.send_bytes(b"b")
        await socket.send_str("c")
        await socket.close()
    await reader
    return socket


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    app = web.Application()
    app[SITE] = running = Site("")
    app.router.add_get("/", _root)
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/encoded/{kind}", _encoded)
    app.router.add_get("/held", _held)
    app.router.add_get("/status/{code}", _status)
    app.router.add_get("/ws", _websocket)
    runner = web.AppRunner(app)
    await runner.setup()
    server = web.TCPSite(runner, "127.0.0.1", 0)
    await server.start()
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    running.url = f"http://127.0.0.1:{port}"
    yield running
    running.release.set()
    running.push.set()
    await runner.cleanup()


async def fire(runtime: PolicyRuntime, event: str, *args: object) -> object:
    fired = await runtime.fire(event, *args)
    assert fired.status == "ok", fired.value
    return json.loads(fired.value) if isinstance(fired.value, str) else fired.value


# --- the reference pages' examples -------------------------------------------------------------


async def test_build_client_example(load_policy: LoadPolicy, site: Site) -> None:
    runtime = load_policy(
        f"""
        kumo.on('example', function()
          local seen = {{}}
          local response = kumo.http.build_client({{}}):get('{site.url}/'):send()
          seen.status = {{ response:status_code(), response:status_reason() }}
          seen.headers = {{}}
          for k, v in pairs(response:headers()) do
            seen.headers[#seen.headers + 1] = k .. ': ' .. v
          end
          seen.text = response:text()
          return kumo.json_encode(seen)
        end)
        """
    )
    seen = await fire(runtime, "example")
    assert isinstance(seen, dict)
    assert seen["status"] == [200, "OK"]
    assert seen["text"] == "hello"
    assert {"x-header: value", "set-cookie: a=1", "set-cookie: b=2"} <= set(seen["headers"])


async def test_request_examples(load_policy: LoadPolicy, site: Site) -> None:
    runtime = load_policy(
        f"""
        local client = kumo.http.build_client {{ user_agent = 'kumo-test/1' }}
        kumo.on('json', function()
          local request = client:post '{site.url}/echo'
          request:header('Content-Type', 'application/json')
          request:headers {{ ['X-Many'] = 'one' }}
          request:header('X-Many', 'two'):basic_auth('user')
          request:body(kumo.json_encode {{ key = 'value' }})
          return request:send():text()
        end)
        kumo.on('form', function()
          local request = client:put '{site.url}/echo'
          request:form_url_encoded {{ key = 'value', other_key = 'other value&' }}
          return request:bearer_auth('tok'):send():text()
        end)
        kumo.on('multipart', function()
          local request = client:post '{site.url}/echo'
          request:form_multipart_data {{
            key = 'value',
            other_key = 'other_value',
            upload = {{ data = 'file body', file_name = 'a.txt' }},
          }}
          return request:send():text()
        end)
        """
    )
    sent = await fire(runtime, "json")
    assert sent == {
        "method": "POST",
        "authorization": "Basic dXNlcjo=",
        "user_agent": "kumo-test/1",
        "content_type": "application/json",
        "x": ["one", "two"],
        "body": '{"key":"value"}',
        "form": {},
    }
    form = await fire(runtime, "form")
    assert isinstance(form, dict)
    assert form["method"] == "PUT"
    assert form["authorization"] == "Bearer tok"
    assert form["content_type"] == "application/x-www-form-urlencoded"
    assert form["form"] == {"key": "value", "other_key": "other value&"}
    multipart = await fire(runtime, "multipart")
    assert isinstance(multipart, dict)
    assert multipart["content_type"].startswith("multipart/form-data; boundary=")
    assert multipart["form"] == {
        "key": "value",
        "other_key": "other_value",
        "upload": {"file": "a.txt", "data": "file body"},
    }


async def test_response_methods(load_policy: LoadPolicy, site: Site) -> None:
    runtime = load_policy(
        f"""
        local client = kumo.http.build_client {{}}
        kumo.on('status', function(code)
          local r = client:get('{site.url}/status/' .. code):send()
          return kumo.json_encode {{
            r:status_code(), r:status_reason() or 'nil', r:status_is_informational(),
            r:status_is_success(), r:status_is_redirection(), r:status_is_client_error(),
            r:status_is_server_error(),
          }}
        end)
        kumo.on('text', function(kind)
          local r = client:get('{site.url}/encoded/' .. kind):send()
          local length = r:content_length()
          return kumo.json_encode {{ length, r:headers()['CONTENT-TYPE'], r:text() }}
        end)
        kumo.on('bytes', function()
          local r = client:get('{site.url}/encoded/raw'):send()
          local data = r:bytes()
          local ok, err = pcall(r.headers, r)
          return kumo.json_encode {{ #data, data:byte(4), ok, err, r:status_code() }}
        end)
        """
    )
    assert await fire(runtime, "status", 404) == [
        404,
        "Not Found",
        False,
        False,
        False,
        True,
        False,
    ]
    assert await fire(runtime, "status", 299) == [299, "nil", False, True, False, False, False]
    assert await fire(runtime, "text", "latin1") == [4, "text/plain; charset=iso-8859-1", "café"]
    assert await fire(runtime, "text", "bom") == [5, "text/plain", "hi"]
    assert await fire(runtime, "text", "raw") == [4, "text/plain", "ok \ufffd"]
    count, byte, ok, err, status = await fire(runtime, "bytes")  # type: ignore[misc]
    assert (count, byte, ok, status) == (4, 255, False, 200)
    assert "response:headers(): the body was already taken by text() or bytes()" in err


def test_build_url_example(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local url = kumo.http.build_url('https://example.com/?existing=value', {
          a = 1,
          b = 2,
        })
        assert(url == 'https://example.com/?existing=value&a=1&b=2')
        RESULT = kumo.http.build_url('http://example.com', { q = 'a b&c~*' })
        """
    )
    assert runtime._lua.eval("RESULT") == "http://example.com/?q=a+b%26c%7E*"


async def test_connect_websocket_example(load_policy: LoadPolicy, site: Site) -> None:
    ws = site.url.replace("http://", "ws://") + "/ws"
    runtime = load_policy(
        f"""
        kumo.on('example', function()
          local stream, response = kumo.http.connect_websocket '{ws}'
          local seen = {{ status = {{ response:status_code(), response:status_reason() }} }}
          seen.upgrade = response:headers()['upgrade']
          seen.text = response:text()
          seen.first = stream:recv()
          seen.nothing_yet = #stream:recv_batch '50ms'
          PUSH()
          seen.batch = stream:recv_batch '30s'  -- ends when the server closes
          seen.after_close = stream:recv() == nil
          local ok, err = pcall(stream.recv_batch, stream, 1)
          seen.batch_after_close = err
          return kumo.json_encode(seen)
        end)
        kumo.on('closing', function()
          do
            local stream <close> = kumo.http.connect_websocket '{ws}'
            KEPT = stream
            stream:recv()
          end
          local other = kumo.http.connect_websocket '{ws}'
          other:close()
          return kumo.json_encode {{ KEPT:recv() == nil, other:recv() == nil }}
        end)
        """
    )
    assert await fire(runtime, "closing") == [True, True]  # closed: nothing more to receive
    runtime._lua.globals()["PUSH"] = site.push.set
    seen = await fire(runtime, "example")
    assert isinstance(seen, dict)
    assert seen.pop("batch_after_close").endswith(f"stream:recv_batch: {ws}: websocket closed")
    assert seen == {
        "status": [101, "Switching Protocols"],
        "upgrade": "websocket",
        "text": "",
        "first": "hello",
        "nothing_yet": 0,
        "batch": ["a", "b", "c"],
        "after_close": True,
    }


# --- pooling, waiting, failures ------------------------------------------------------------


async def test_requests_of_a_client_reuse_one_connection(
    load_policy: LoadPolicy, site: Site
) -> None:
    runtime = load_policy(
        f"""
        local client = kumo.http.build_client {{}}
        kumo.on('example', function()
          client:get('{site.url}/'):send():text()
          kumo.http.build_client({{}}):get('{site.url}/'):send():text()
        end)
        """
    )
    await fire(runtime, "example")
    await fire(runtime, "example")
    assert len(site.peers) == 4
    assert len(set(site.peers)) == 1


async def test_a_handler_waits_for_its_answer_while_another_runs(
    load_policy: LoadPolicy, site: Site
) -> None:
    runtime = load_policy(
        f"""
        kumo.on('slow', function()
          return kumo.http.build_client({{}}):get('{site.url}/held'):send():text()
        end)
        kumo.on('quick', function() return 'answered' end)
        """
    )
    slow = asyncio.ensure_future(runtime.fire("slow"))
    await asyncio.sleep(0.1)
    quick = await runtime.fire("quick")
    assert (quick.status, quick.value) == ("ok", "answered")
    assert not slow.done()
    site.release.set()
    fired = await slow
    assert (fired.status, fired.value) == ("ok", "released")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("client:get(URL .. '/held'):timeout(0.2):send()", "/held: no answer within 0.2 s"),
        ("client:get('http://127.0.0.1:9/'):send()", "request:send: GET http://127.0.0.1:9/: "),
        ("client:get('ftp://x/')", "client:get(): 'ftp://x/' is not an http(s) URL"),
        ("client:close() client:get(URL)", "client:get(): client was closed"),
        (
            "local r = client:get(URL .. '/') r:send() r:send()",
            "request:send(): this request was already sent",
        ),
        ("client:get(URL):aws_sign_v4 {}", "request:aws_sign_v4(): not supported yet"),
        ("kumo.http.connect_websocket(URL)", "kumo.http.connect_websocket: 'http://"),
        ("kumo.http.connect_websocket('ws://127.0.0.1:9/')", "kumo.http.connect_websocket: "),
    ],
)
async def test_failures_name_the_policy_line(
    load_policy: LoadPolicy, site: Site, call: str, message: str
) -> None:
    runtime = load_policy(
        f"""local URL, client = '{site.url}', kumo.http.build_client {{}}
        kumo.on('example', function()
          {call}
        end)
        """
    )
    fired = await runtime.fire("example")
    assert fired.status == "error"
    first = str(fired.value).splitlines()[0]
    assert "/policy.lua:3: " in first
    assert message in first


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("{ agent = 'x' }", "kumo.http.build_client: unknown key 'agent'"),
        ("{ timeout = 'soon' }", "build_client: timeout: invalid duration 'soon'"),
        ("'x'", "kumo.http.build_client: expected a table of options"),
    ],
)
def test_build_client_refuses_bad_options(
    load_policy: LoadPolicy, options: str, message: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(f"\nkumo.http.build_client({options})\n")
    assert f"/policy.lua:2: {message}" in str(caught.value)


def test_build_client_takes_every_documented_option(load_policy: LoadPolicy) -> None:
    load_policy(
        """
        kumo.http.build_client {
          user_agent = 'x', connection_verbose = true, pool_idle_timeout = '30s',
          timeout = '1 minute', accept_invalid_certs = true,
        }
        """
    )
