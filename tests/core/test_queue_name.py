"""Queue names: KumoMTA's forms, both ways."""

from __future__ import annotations

import pytest

from kumoclient.core.queue_name import check_part, format_queue_name, parse_queue_name
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


@pytest.mark.parametrize(
    ("part", "value"),
    [("tenant", "acme"), ("campaign", "spring-2026!x"), ("routing_domain", "relay.example:2525")],
)
def test_a_part_without_separators_round_trips(part: str, value: str) -> None:
    assert check_part(part, value) == value
    parts = {"tenant": "t", "campaign": "c", "routing_domain": "rd.example", part: value}
    name = Q("example.com", parts["tenant"], parts["campaign"], parts["routing_domain"])
    assert parse_queue_name(format_queue_name(name)) == name


@pytest.mark.parametrize(
    ("part", "value", "error"),
    [
        ("tenant", "", "a tenant must not be empty"),
        ("tenant", "a@b", "a tenant must not contain '@' \\(they separate"),
        ("tenant", "a:b", "a tenant must not contain ':'"),
        ("campaign", "c:@d", "a campaign must not contain ':' or '@'"),
        ("routing_domain", "x@y", "a routing domain must not contain '@'"),
    ],
)
def test_a_part_with_a_separator_is_refused(part: str, value: str, error: str) -> None:
    with pytest.raises(QueueNameError, match=error):
        check_part(part, value)
