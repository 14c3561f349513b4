"""The policies in examples/ do what their comments and the README say, written as an
operator would test them: with the kumoclient.testing fixtures (scripted_mx, kumo_engine)."""

from __future__ import annotations

import pytest

from kumoclient.testing import EngineFactory, ScriptedMX

PER_TENANT = "../examples/per_tenant.lua"


@pytest.mark.parametrize(
    ("reply", "recipient", "meta", "expected"),
    [
        # the tenant 'strict': any 4.2.2 bounces...
        ("452 4.2.2 Mailbox full", "a@example.com", {"tenant": "strict"}, ("Bounce", 500)),
        # ...other tenants keep the 452 and retry
        ("452 4.2.2 Mailbox full", "a@example.com", {"tenant": "relaxed"}, ("Transient", 452)),
        # the campaign 'newsletter' to a big provider: 450 bounces
        ("450 4.2.1 unavailable", "a@gmail.com", {"campaign": "newsletter"}, ("Bounce", 550)),
        ("450 4.2.1 unavailable", "a@example.com", {"campaign": "newsletter"}, ("Transient", 450)),
        ("450 4.2.1 unavailable", "a@gmail.com", {"campaign": "promo"}, ("Transient", 450)),
        # through a smarthost (routing_domain set): its 554 5.7.1 is retried
        (
            "554 5.7.1 relay temporarily refused",
            "a@example.com",
            {"routing_domain": "relay.example.net"},
            ("Transient", 451),
        ),
        ("554 5.7.1 relay temporarily refused", "a@example.com", {}, ("Bounce", 554)),
    ],
)
async def test_per_tenant_rules(
    scripted_mx: ScriptedMX,
    kumo_engine: EngineFactory,
    reply: str,
    recipient: str,
    meta: dict[str, str],
    expected: tuple[str, int],
) -> None:
    scripted_mx.reply(recipient, reply)
    engine = await kumo_engine(PER_TENANT, mx=scripted_mx)
    result = await engine.deliver(recipient, meta=meta)
    kind = "Transient" if result.type == "TransientFailure" else result.type
    assert (kind, result.code) == expected


async def test_per_tenant_leaves_accepted_mail_alone(
    scripted_mx: ScriptedMX, kumo_engine: EngineFactory
) -> None:
    engine = await kumo_engine(PER_TENANT, mx=scripted_mx)
    result = await engine.deliver("b@example.com", meta={"tenant": "strict"})
    assert result.type == "Delivery"
