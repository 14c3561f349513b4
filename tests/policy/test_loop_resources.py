"""policy.modules.loop_resources: one shared object per key and event loop, closed when the loop
ends (asyncio.run, as a policy loading runs its waits) — real event loops, no mocks."""

from __future__ import annotations

import asyncio

from kumoclient.policy.modules import loop_resources


class Thing:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed_on: asyncio.AbstractEventLoop | None = None

    async def close(self) -> None:
        await asyncio.sleep(0)  # closing may wait, as a connection pool's does
        self.closed_on = asyncio.get_running_loop()


async def _close(thing: Thing) -> None:
    await thing.close()


def test_one_object_per_key_and_loop_closed_when_the_loop_ends() -> None:
    made: list[Thing] = []

    def make() -> Thing:
        made.append(Thing(f"thing-{len(made)}"))
        return made[-1]

    async def use() -> tuple[Thing, Thing, Thing, asyncio.AbstractEventLoop]:
        first = loop_resources.shared("a", make, _close)
        again = loop_resources.shared("a", make, _close)
        other = loop_resources.shared("b", make, _close)
        return first, again, other, asyncio.get_running_loop()

    first, again, other, loop = asyncio.run(use())
    assert first is again
    assert other is not first
    assert (first.closed_on, other.closed_on) == (loop, loop)  # closed on their own loop
    second_run = asyncio.run(use())[0]  # a new loop: new objects
    assert second_run is not first
    assert len(made) == 4


def test_forget_leaves_an_object_to_its_owner() -> None:
    async def use() -> Thing:
        thing = loop_resources.shared("x", lambda: Thing("x"), _close)
        loop_resources.forget("x")
        replacement = loop_resources.shared("x", lambda: Thing("y"), _close)
        assert replacement is not thing
        return thing

    forgotten = asyncio.run(use())
    assert forgotten.closed_on is None
