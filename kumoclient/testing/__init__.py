"""pytest plugin for testing kumoclient policies: a scripted MX and an engine on a policy file.

Registered as the `kumoclient` pytest11 entry point, so with kumoclient and pytest-asyncio
installed every pytest run has the fixtures `scripted_mx` and `kumo_engine`:

    async def test_over_quota_is_a_bounce(scripted_mx, kumo_engine):
        scripted_mx.reply("full@example.com", "452 4.2.2 The mailbox is over quota.")
        engine = await kumo_engine("policy.lua", mx=scripted_mx)
        result = await engine.deliver("full@example.com")
        assert result.type == "Bounce"

`kumo_engine` runs the policy file as the daemon would (same runtime, same queue and egress
configs, same rewrite hook) except that every queue is delivered to the scripted MX:
`mx_list` is replaced by the MX's address, `prohibited_hosts` emptied, TLS disabled and
`source_address` dropped, much as `kumoclient send --mx` does. See docs/testing.md.
"""

from kumoclient.testing.engine import DEFAULT_SENDER, DEFAULT_TIMEOUT, KumoEngine, make_message
from kumoclient.testing.fixtures import EngineFactory, kumo_engine, scripted_mx
from kumoclient.testing.mx import PHASES, Received, ScriptedMX
from kumoclient.testing.records import LogRecord

__all__ = [
    "DEFAULT_SENDER",
    "DEFAULT_TIMEOUT",
    "PHASES",
    "EngineFactory",
    "KumoEngine",
    "LogRecord",
    "Received",
    "ScriptedMX",
    "kumo_engine",
    "make_message",
    "scripted_mx",
]
