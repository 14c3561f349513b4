"""The `kumo` modules written in Python; importing this package registers them with
`policy.api` (each module registers its own functions)."""

from kumoclient.policy.modules import (
    cidr,
    digest,
    domain_map,
    encode,
    fs,
    keysource,
    regexes,
    serde,
    strings,
    times,
    uuids,
    version,
)

__all__ = [
    "cidr",
    "digest",
    "domain_map",
    "encode",
    "fs",
    "keysource",
    "regexes",
    "serde",
    "strings",
    "times",
    "uuids",
    "version",
]
