"""Which queues a Selector picks, on literal queue names."""

from __future__ import annotations

import pytest

from kumoclient.core.queue_name import parse_queue_name
from kumoclient.core.selector import Selector


@pytest.mark.parametrize(
    ("selector", "queue", "selected"),
    [
        (Selector(), "example.com", True),
        (Selector(), "camp:tenant@example.com!rd.example", True),
        (Selector(domain="Example.COM"), "example.com", True),
        (Selector(domain="example.com"), "t1@EXAMPLE.com", True),
        (Selector(domain="example.com"), "example.org", False),
        (Selector(tenant="t1"), "t1@example.com", True),
        (Selector(tenant="t1"), "T1@example.com", False),
        (Selector(tenant="t1"), "example.com", False),
        (Selector(campaign="c1"), "c1:t1@example.com", True),
        (Selector(campaign="c1"), "c1:@example.com", True),
        (Selector(campaign="c1", tenant="t2"), "c1:t1@example.com", False),
        (Selector(domain="example.com", tenant="t1"), "t1@example.com!relay.example", True),
    ],
)
def test_a_selector_matches_the_parts_of_a_queue_name(
    selector: Selector, queue: str, selected: bool
) -> None:
    assert selector.matches(parse_queue_name(queue)) is selected


def test_the_empty_selector_is_everything_and_the_domain_is_kept_lower_case() -> None:
    assert Selector().everything
    assert not Selector(campaign="c").everything
    assert Selector(domain="Example.COM").as_dict() == {
        "domain": "example.com",
        "tenant": None,
        "campaign": None,
    }
