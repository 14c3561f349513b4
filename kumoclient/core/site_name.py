"""KumoMTA's site name of a set of MX hosts (the name of their ready queue, and `site_name`
of `kumo.dns.lookup_mx`)."""

from __future__ import annotations

from collections.abc import Iterable


def factor_names(hosts: Iterable[str]) -> str:
    """Labels compared from the right, alternatives in parentheses (sorted), `?` where some
    names lack the label: `mta5.am0.yahoodns.net, mta6.am0.yahoodns.net` ->
    `(mta5|mta6).am0.yahoodns.net`. Case and a final dot do not matter."""
    reversed_labels = [host.lower().rstrip(".").split(".")[::-1] for host in hosts]
    depth = max((len(labels) for labels in reversed_labels), default=0)
    parts: list[str] = []
    for index in range(depth):
        seen = sorted({labels[index] for labels in reversed_labels if index < len(labels)})
        optional = any(index >= len(labels) for labels in reversed_labels)
        text = seen[0] if len(seen) == 1 else "(" + "|".join(seen) + ")"
        parts.append(text + "?" if optional else text)
    return ".".join(reversed(parts))
