"""The inject API's templates within their time and size bounds: runaway loops, recursion and
outputs that would be huge are stopped with a 400 reason, ordinary templates are untouched;
and a runaway template sent to a real daemon, which goes on serving and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from kumoclient.core.template import OUTPUT_LIMIT, RenderClock
from kumoclient.errors import BadInjectRequest
from kumoclient.http.inject_message import generate
from kumoclient.http.inject_request import parse_request
from tests.daemon_process import DaemonProcess, free_port
from tests.test_daemon import submit

BIG = "{% set big = 'y' * 1048576 %}"  # 1 MiB: as large as `*` may make


def rendered(template: str, clock: RenderClock | None = None, **substitutions: Any) -> str:
    body = {
        "envelope_sender": "bounces@example.com",
        "content": f"Subject: t\n\n{template}\n",
        "recipients": [{"email": "one@example.net"}],
        "substitutions": substitutions,
    }
    (message,) = generate(parse_request(body), clock)
    return message.content.decode().split("\r\n\r\n", 1)[1].rstrip("\r\n")


@pytest.mark.parametrize(
    "template",
    [
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        # no call in the inner loop: the loop itself reads the clock
        "{% set s = 'x' * 100000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
        # a macro calling itself twice, 2**40 times
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    ],
    ids=["nested-loops", "loops-over-a-string", "exponential-recursion"],
)
def test_a_runaway_template_is_stopped_at_the_time_limit(template: str) -> None:
    with pytest.raises(BadInjectRequest, match=r"template stopped: rendering took more than 0.3 s"):
        rendered(template, RenderClock(0.3))


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "the output is over"),
        (BIG + "{% set x %}{% for i in range(30) %}{{ big }}{% endfor %}{% endset %}", "output"),
        (
            "{% macro m() %}{% for i in range(30) %}" + BIG + "{{ big }}{% endfor %}{% endmacro %}"
            "{{ m() }}",
            "the output is over",
        ),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
            "{% endfor %}{{ ns.s|length }}",
            "over the limit",
        ),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}"
            "{% endfor %}",
            "'+' would make",
        ),
        (BIG + "{{ ([big] * 1000)|join }}", "'join' would make"),
        (BIG + "{{ [big] * 1000 }}", "whose text is over"),
        (BIG + "{{ '%s' % ([big] * 1000,) }}", "whose text is over"),
        ("{{ 'x'|center(1000000000) }}", "a width of 1000000000"),
        ("{{ 'x'|indent(1000000000, true) }}", "a width of 1000000000"),
        ("{{ 'x'.ljust(1000000000) }}", "a width of 1000000000"),
        ("{{ '%0999999999d' % 1 }}", "a width of 999999999"),
        ("{{ '%*d' % (999999999, 1) }}", "a width of 999999999"),
        ("{{ '{:>999999999}'.format(1) }}", "a width of 999999999"),
        ("{{ '%0999999999d'|format(1) }}", "a width of 999999999"),
        ("{{ range(1000)|join('y' * 1048576) }}", "'join' would make"),
        ("{{ ('y' * 1048576).join(['a'] * 1000) }}", "'join' would make"),
        ("{{ ('x' * 1000)|replace('x', 'y' * 1048576) }}", "'replace' would make"),
        ("{{ ('x' * 1000).replace('x', 'y' * 1048576) }}", "'replace' would make"),
        ("{{ 'x' * 10**9 }}", "'*' would make"),
        ("{{ 2 ** 100000 }}", "exponent"),
    ],
)
def test_a_template_making_a_huge_value_is_refused(template: str, reason: str) -> None:
    with pytest.raises(BadInjectRequest, match="template stopped") as refused:
        rendered(template)
    assert reason in str(refused.value)


def test_an_output_just_under_the_size_limit_is_made() -> None:
    text = rendered("{{ 'z' * 1000000 }}" * (OUTPUT_LIMIT // 1000000))
    assert len(text) == OUTPUT_LIMIT // 1000000 * 1000000


def test_lists_and_dicts_cannot_be_changed_in_place() -> None:
    """The immutable sandbox (KumoMTA's MiniJinja has no such methods either): no list grown
    with `append` in a loop."""
    with pytest.raises(BadInjectRequest, match="template error: SecurityError"):
        rendered("{% set l = [] %}{% for i in range(10) %}{{ l.append(i) }}{% endfor %}")


def test_ordinary_templates_render_as_before() -> None:
    template = (
        "{% for item in items %}{{ loop.index }}. {{ item.name|upper }} "
        "{{ '%05.1f'|format(item.price) }}{{ ', ' if not loop.last }}{% endfor %}"
        " | {{ '{:>6}'.format(total) }} | {{ items|map(attribute='name')|join('+') }}"
        " | {{ ('ab' ~ 'cd') * 2 }} | {{ [1, 2] + [3] }} | {{ 'x'|center(7) }}|"
    )
    items = [{"name": "tea", "price": 2.5}, {"name": "cake", "price": 4}]
    assert rendered(template, items=items, total=6.5) == (
        "1. TEA 002.5, 2. CAKE 004.0 |    6.5 | tea+cake | abcdabcd | [1, 2, 3] |    x   |"
    )


def test_a_render_given_up_from_another_thread_stops_at_its_next_step() -> None:
    """What the HTTP handler does when its request is cancelled (the daemon stops)."""
    clock = RenderClock(3600)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            rendered(
                "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
                clock,
            )
        except BadInjectRequest as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(0.2)
    assert thread.is_alive()  # it runs ...
    clock.cancel()
    thread.join(10)
    assert not thread.is_alive()  # ... and stops once given up
    assert "the request was given up" in str(outcome[0])


def post(port: int, path: str, body: object | None = None) -> tuple[int, dict[str, object]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


RUNAWAY = {
    "envelope_sender": "a@example.com",
    "recipients": [{"email": "b@example.net"}],
    "content": "Subject: x\n\n{% for a in range(100000) %}{% for b in range(100000) %}"
    "{% endfor %}{% endfor %}\n",
}


@pytest.mark.slow
def test_a_runaway_template_gets_400_and_the_daemon_answers_meanwhile_and_stops(
    tmp_path: Path,
) -> None:
    """A template looping 10**10 times is stopped at its time bound (2 s) with a 400; while it
    runs, the daemon answers HTTP and SMTP; SIGTERM during another one stops the daemon."""
    http_port = free_port()
    daemon = DaemonProcess(tmp_path / "data")
    daemon.extra_args = ["--http", f"127.0.0.1:{http_port}"]
    daemon.start()
    try:

        async def meanwhile() -> tuple[tuple[int, dict[str, object]], str, int]:
            runaway = asyncio.ensure_future(
                asyncio.to_thread(post, http_port, "/api/inject/v1", RUNAWAY)
            )
            await asyncio.sleep(0.5)
            message = b"Subject: meanwhile\r\n\r\nhi\r\n"
            smtp = await asyncio.to_thread(submit, daemon.port, ["b@example.net"], message)
            live, _ = await asyncio.to_thread(post, http_port, "/api/check-liveness/v1")
            return await runaway, smtp, live

        (status, answer), smtp, live = asyncio.run(meanwhile())
        assert status == 400
        assert "template stopped: rendering took more than 2 s" in str(answer["error"])
        assert smtp.startswith("250 ")
        assert live == 200
        # and SIGTERM while one renders: the render is given up, the daemon exits 0
        assert asyncio.run(_post_then_stop(daemon, http_port)) == 0
    finally:
        daemon.kill()


async def _post_then_stop(daemon: DaemonProcess, http_port: int) -> int:
    rendering = asyncio.ensure_future(asyncio.to_thread(post, http_port, "/api/inject/v1", RUNAWAY))
    await asyncio.sleep(0.5)
    code = await asyncio.to_thread(daemon.stop, 15)
    with contextlib.suppress(OSError, urllib.error.URLError):
        await rendering
    return code
