"""smtp_client_rewrite_delivery_status, exactly per SPEC 2.3 steps 2-4."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from kumoclient.core.reply import SPACE, parse_reply_lines
from kumoclient.records import Disposition, EnhancedCode, QueueName, Reply
from tests.policy.conftest import LoadPolicy

OVER_QUOTA = Reply(452, EnhancedCode(4, 2, 2), "over quota.", "RCPT TO:<a@d.com>\r\n")
Q = QueueName("d.com")


def returning(expr: str) -> str:
    return (
        "kumo.on('smtp_client_rewrite_delivery_status', function(response, domain, tenant,"
        f" campaign, routing_domain)\n  return {expr}\nend)\n"
    )


async def test_hook_receives_one_line_response_and_queue_parts(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('smtp_client_rewrite_delivery_status', function(r, d, t, c, rd)
          ARGS = table.concat({r, d, tostring(t), tostring(c), rd}, '|')
        end)
        """
    )
    await runtime.rewrite_delivery_status(OVER_QUOTA, QueueName("d.com"))
    assert runtime._lua.globals().ARGS == "452 4.2.2 over quota.|d.com|nil|nil|d.com"
    await runtime.rewrite_delivery_status(OVER_QUOTA, QueueName("d.com", "", "camp", "rd.net"))
    assert runtime._lua.globals().ARGS == "452 4.2.2 over quota.|d.com||camp|rd.net"


async def test_multi_line_reply_arrives_with_literal_crlf(load_policy: LoadPolicy) -> None:
    runtime = load_policy("kumo.on('smtp_client_rewrite_delivery_status', function(r) R = r end)")
    reply = parse_reply_lines(["550-5.1.1 one", "550-5.1.1 two", "550 5.1.1 three"])
    await runtime.rewrite_delivery_status(reply, Q)
    assert runtime._lua.globals().R == "550 5.1.1 one\\r\\ntwo\\r\\nthree"
    await runtime.rewrite_delivery_status(reply, Q, SPACE)
    assert runtime._lua.globals().R == "550 5.1.1 one two three"


async def test_rewrite_to_500_bounces_with_note_and_keeps_enhanced_code(
    load_policy: LoadPolicy,
) -> None:
    outcome = await load_policy(returning("500")).rewrite_delivery_status(OVER_QUOTA, Q)
    assert outcome.rewritten
    assert outcome.disposition is Disposition.BOUNCE
    assert outcome.reply.code == 500
    assert outcome.reply.enhanced_code == EnhancedCode(4, 2, 2)
    assert outcome.reply.command == "RCPT TO:<a@d.com>\r\n"
    assert outcome.reply.content.endswith("(kumomta: status was rewritten from 452 -> 500)")
    assert outcome.reply.content == "over quota. (kumomta: status was rewritten from 452 -> 500)"


@pytest.mark.parametrize("expr", ["nil", "", "452", "'452'"])
async def test_nil_nothing_or_same_code_changes_nothing(load_policy: LoadPolicy, expr: str) -> None:
    outcome = await load_policy(returning(expr)).rewrite_delivery_status(OVER_QUOTA, Q)
    assert not outcome.rewritten
    assert outcome.reply == OVER_QUOTA
    assert outcome.disposition is Disposition.TRANSIENT_FAILURE
    assert outcome.error is None


@pytest.mark.parametrize(
    ("expr", "code", "disposition"),
    [
        ("'500'", 500, Disposition.BOUNCE),
        ("' 550 '", 550, Disposition.BOUNCE),
        ("250", 250, Disposition.DELIVERY),
        ("503", 503, Disposition.TRANSIENT_FAILURE),
        ("421.0", 421, Disposition.TRANSIENT_FAILURE),
        ("999", 999, Disposition.BOUNCE),
        ("100", 100, Disposition.BOUNCE),
    ],
)
async def test_codes_and_numeric_strings_are_applied(
    load_policy: LoadPolicy, expr: str, code: int, disposition: Disposition
) -> None:
    outcome = await load_policy(returning(expr)).rewrite_delivery_status(OVER_QUOTA, Q)
    assert outcome.reply.code == code
    assert outcome.disposition is disposition
    assert outcome.reply.content.endswith(f"(kumomta: status was rewritten from 452 -> {code})")


async def test_5xx_rewritten_to_4xx_is_transient(load_policy: LoadPolicy) -> None:
    reply = Reply(550, EnhancedCode(5, 1, 1), "no such user", "RCPT TO:<x@d.com>\r\n")
    outcome = await load_policy(returning("451")).rewrite_delivery_status(reply, Q)
    assert outcome.disposition is Disposition.TRANSIENT_FAILURE
    assert outcome.reply.code == 451


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("{}", "returned a table"),
        ("true", "returned a boolean (true)"),
        ("-1", "out of range"),
        ("70000", "out of range"),
        ("450.5", "not a whole number"),
        ("'soon'", "the string 'soon'"),
        ("function() end", "returned a function"),
    ],
)
async def test_unusable_return_keeps_original_and_logs_one_error(
    load_policy: LoadPolicy, expr: str, problem: str
) -> None:
    runtime = load_policy(returning(expr))
    with capture_logs() as logs:
        outcome = await runtime.rewrite_delivery_status(OVER_QUOTA, Q)
    assert outcome.reply == OVER_QUOTA
    assert not outcome.rewritten
    assert outcome.disposition is Disposition.TRANSIENT_FAILURE
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    assert len(errors) == 1
    assert problem in errors[0]["event"]
    assert "Preserving original response" in errors[0]["event"]
    assert errors[0]["policy_location"].endswith("policy.lua:1")
    assert errors[0]["policy"].endswith("policy.lua")


async def test_handler_error_keeps_original_and_names_the_line(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        "kumo.on('smtp_client_rewrite_delivery_status', function(r)\n"
        "  error('classifier exploded')\n"
        "end)\n"
    )
    with capture_logs() as logs:
        outcome = await runtime.rewrite_delivery_status(OVER_QUOTA, Q)
        again = await runtime.rewrite_delivery_status(OVER_QUOTA, Q)
    assert outcome.reply == OVER_QUOTA
    assert again.reply == OVER_QUOTA  # the runtime goes on working
    assert outcome.error is not None
    assert "classifier exploded" in outcome.error
    assert logs[0]["log_level"] == "error"
    assert logs[0]["policy_location"].endswith("policy.lua:2")
    assert "stack traceback" in logs[0]["lua_traceback"]


async def test_kumo_reject_inside_the_hook_is_an_error_not_a_rewrite(
    load_policy: LoadPolicy,
) -> None:
    runtime = load_policy(returning("kumo.reject(550, 'x')"))
    with capture_logs() as logs:
        outcome = await runtime.rewrite_delivery_status(OVER_QUOTA, Q)
    assert outcome.reply == OVER_QUOTA
    assert "kumo.reject" in logs[0]["event"]


async def test_no_handler_means_no_change(load_policy: LoadPolicy) -> None:
    outcome = await load_policy("").rewrite_delivery_status(OVER_QUOTA, Q)
    assert outcome.reply == OVER_QUOTA
    assert outcome.disposition is Disposition.TRANSIENT_FAILURE
