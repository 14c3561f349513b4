"""The diagnostic log filter (`kumo.set_diagnostic_log_filter`): KumoMTA's EnvFilter directives
mapped onto kumoclient's modules, changed at run time; lines really written or not."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from kumoclient import logs
from kumoclient.errors import ConfigError
from kumoclient.logs.filter import OFF, STATE, parse_filter
from kumoclient.policy.runtime import PolicyRuntime


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    """The process's logging set up anew for the test, as it was afterwards."""
    config = structlog.get_config()
    active = STATE.active
    yield
    structlog.configure(**config)
    STATE.install(active)


@pytest.mark.parametrize(
    ("text", "module", "level"),
    [
        ("kumod=info", "kumoclient.engine.dispatch", logging.INFO),
        ("kumod=info", "lua", OFF),  # not named: nothing, as KumoMTA's EnvFilter
        ("kumod=info", "somewhere.else", OFF),
        ("warn", "kumoclient.engine", logging.WARNING),  # a bare level: every module
        ("kumod=info,kumo_server_lifecycle=debug", "kumoclient.daemon.daemon", logging.DEBUG),
        ("kumod=info,kumo_server_lifecycle=debug", "kumoclient.spool.local", logging.INFO),
        ("kumoclient::engine=error,kumod=debug", "kumoclient.engine.routing", logging.ERROR),
        ("kumoclient.engine=error,kumod=debug", "kumoclient.engineering", logging.DEBUG),
        ("lua", "lua", logging.DEBUG),  # a target alone: every level
        ("lua=trace", "lua", logging.DEBUG),
        ("kumod=off,error", "kumoclient.mx", OFF),
        ("kumod=off,error", "lua", logging.ERROR),
        ("kumod=3", "kumoclient.mx", logging.INFO),
        ("kumod=info,kumod=warn", "kumoclient.mx", logging.WARNING),  # the later one
    ],
)
def test_directives_give_each_module_its_level(text: str, module: str, level: int) -> None:
    assert parse_filter(text).level_for(module) == level


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kumod=loud", "unknown level 'loud'"),
        ("kumod[smtp]=debug", "span and field filters are not supported"),
        ("kumod{id=1}=debug", "span and field filters are not supported"),
        ("kum od=info", "is not a target"),
    ],
)
def test_a_bad_directive_is_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_filter(text)


def _events(text: str) -> list[str]:
    return [json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")]


@pytest.mark.usefixtures("fresh_logging")
def test_changing_the_filter_changes_what_is_written_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure_logging("json", "info")
    engine, lua = logs.get_logger("kumoclient.engine.dispatch"), logs.get_logger("lua")
    engine.debug("e-debug-1")
    engine.info("e-info-1")
    lua.debug("l-debug-1")
    logs.set_diagnostic_filter("kumod=warn,lua=debug")
    engine.info("e-info-2")
    engine.warning("e-warning-2")
    lua.debug("l-debug-2")
    logs.set_diagnostic_filter("error")
    lua.warning("l-warning-3")
    engine.error("e-error-3")
    assert _events(capsys.readouterr().err) == [
        "e-info-1",
        "e-warning-2",
        "l-debug-2",
        "e-error-3",
    ]


@pytest.mark.usefixtures("fresh_logging")
async def test_the_policy_call_puts_the_filter_in_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The reference page's example (`kumod=debug` in init): kumoclient's debug lines are
    written from then on, and the policy's own `kumo.log_info` lines no longer are."""
    logs.configure_logging("json", "info")
    policy = tmp_path / "policy.lua"
    policy.write_text(
        "local kumo = require 'kumo'\n"
        "kumo.on('init', function()\n"
        "  kumo.log_info 'shown'\n"
        "  kumo.set_diagnostic_log_filter 'kumod=debug'\n"
        "  kumo.log_info 'hidden'\n"
        "end)\n"
    )
    await PolicyRuntime(policy).start()
    logs.get_logger("kumoclient.engine").debug("engine-debug")
    assert STATE.active.text == "kumod=debug"
    assert _events(capsys.readouterr().err) == ["shown", "engine-debug"]
