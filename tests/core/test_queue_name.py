"""Queue names: KumoMTA's forms, both ways."""

from __future__ import annotations

import pytest

from kumoclient.core.queue_name import format_queue_name, parse_queue_name
from kumoclient.errors import QueueNameError
from kumoclient.records import QueueName as Q

ROUND_TRIP = [
    (Q("d.com", "t", "c"), "c:t@d.com"),
    (Q("d.com", None, "c"), "c:@d.com"),
    (Q("d.com", "t"), "t@d.com"),
    (Q("d.com"), "d.com"),
    (Q("d.com", "t", "c", "rd.com"), "c:t@d.com!rd.com"),
    (Q("d.com", None, None, "rd.com"), "d.com!rd.com"),
    (Q("d.com", None, None, "routing.com:2025"), "d.com!routing.com:2025"),
    (Q("d.com:2025"), "d.com:2025"),
]


@pytest.mark.parametrize(("name", "text"), ROUND_TRIP)
def test_format(name: Q, text: str) -> None:
    assert format_queue_name(name) == text


@pytest.mark.parametrize(("name", "text"), ROUND_TRIP)
def test_parse(name: Q, text: str) -> None:
    parsed = parse_queue_name(text)
    if name.campaign is not None and name.tenant is None:
        name = Q(name.domain, "", name.campaign, name.routing_domain)  # c:@d has tenant ""
    assert parsed == name


def test_parse_splits_on_first_separators() -> None:
    assert parse_queue_name("a:b:c@d@e!f!g") == Q("d@e", "b:c", "a", "f!g")


def test_format_needs_a_domain() -> None:
    with pytest.raises(QueueNameError):
        format_queue_name(Q(""))
