"""What `kumoclient policy check` and `kumoclient run --validate` run: the lifecycle events of
a validating runtime, then each configuration event the policy registered, once, with sample
arguments, so that a mistake inside a handler (a misspelt key in `make_queue_config`) shows
before mail does. Every failure is PolicyError naming the policy's file:line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kumoclient.configs import InitConfig
from kumoclient.core.reply import parse_one_line
from kumoclient.errors import PolicyError
from kumoclient.policy.events import EVENTS, Result
from kumoclient.policy.results import location
from kumoclient.policy.runtime import PolicyRuntime, failure
from kumoclient.records import QueueName, Reply


async def validate(runtime: PolicyRuntime) -> InitConfig:
    """`pre_init`, `init`, `validate_config` (PolicyError when one fails, or when a handler
    called `kumo.validation_failed()`)."""
    init = await runtime.start()
    await runtime.validate_config()
    return init


async def sample_events(runtime: PolicyRuntime) -> list[str]:
    """Fire each configuration event the policy registered with its sample arguments; one
    line per call saying what it answered (PolicyError for the first failure)."""
    lines: list[str] = []
    for spec in EVENTS.values():
        if spec.sample is None or not runtime.has_handler(spec.name):
            continue
        if spec.result is Result.QUEUE_CONFIG:
            config = await runtime.get_queue_config(QueueName(*spec.sample))
            lines.append(f"{spec.name}{_arguments(spec.sample)}: {config}")
            if config.egress_pool and runtime.has_handler("get_egress_pool"):
                await _fire(runtime, "get_egress_pool", (config.egress_pool,), lines)
        elif spec.result is Result.EGRESS_PATH:
            egress = await runtime.get_egress_path_config(*spec.sample)
            lines.append(f"{spec.name}{_arguments(spec.sample)}: {egress}")
        elif spec.result is Result.STATUS_CODE:
            answer = await runtime.rewrite_hook(*_rewrite_sample(spec.sample))
            if answer is not None and answer.error is not None:
                raise PolicyError(f"{spec.name}: {answer.error}", location=location(answer.error))
            lines.append(f"{spec.name}{_arguments(spec.sample)}: {answer}")
        else:
            await _fire(runtime, spec.name, spec.sample, lines)
    return lines


async def _fire(
    runtime: PolicyRuntime, event: str, args: tuple[Any, ...], lines: list[str]
) -> None:
    fired = await runtime.fire(event, *args)
    if fired.failed:
        raise failure(event, fired)
    lines.append(f"{event}{_arguments(args)}: {fired.status}")


def _rewrite_sample(sample: tuple[Any, ...]) -> tuple[Reply, QueueName]:
    response, domain, tenant, campaign, routing = sample
    return parse_one_line(response), QueueName(domain, tenant, campaign, routing)


def _arguments(args: tuple[Any, ...]) -> str:
    return "(" + ", ".join("nil" if a is None else repr(a) for a in args) + ")"


def load_validating(path: Path) -> PolicyRuntime:
    """The policy loaded for validation (`_VALIDATING_CONFIG` true, spawn_task a no-op)."""
    return PolicyRuntime(path, validating=True)
