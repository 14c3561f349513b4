"""Fixtures for tests against a real Postfix MX (see postfix.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from tests.integration.postfix import PrivatePostfix, require_postfix

PostfixFactory = Callable[..., PrivatePostfix]


@pytest.fixture
def postfix_factory(tmp_path: Path) -> Iterator[PostfixFactory]:
    """Start private Postfix MXs: `postfix_factory(replies=..., access=..., main_cf=...)`.

    Each runs in its own directory under tmp_path; all are stopped at teardown. Fails (never
    skips) when Postfix is not installed.
    """
    require_postfix()
    started: list[PrivatePostfix] = []

    def start(
        *,
        replies: Mapping[str, str] | None = None,
        access: Mapping[str, str] | None = None,
        main_cf: Mapping[str, str] | None = None,
    ) -> PrivatePostfix:
        instance = PrivatePostfix(
            tmp_path / f"postfix-{len(started)}", replies=replies, access=access, main_cf=main_cf
        )
        started.append(instance)
        return instance.start()

    try:
        yield start
    finally:
        for instance in reversed(started):
            instance.stop()


@pytest.fixture
def postfix(postfix_factory: PostfixFactory) -> PrivatePostfix:
    """A running private Postfix MX that accepts and stores everything; put exact replies
    into `postfix.replies` (live) to answer chosen recipients differently."""
    return postfix_factory()
