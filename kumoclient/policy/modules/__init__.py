"""The `kumo` modules written in Python; importing this package registers them with
`policy.api` (each module registers its own functions)."""

from kumoclient.policy.modules import (
    cidr,
    config_epoch,
    digest,
    domain_map,
    encode,
    fs,
    keysource,
    logfilter,
    regexes,
    serde,
    sleep,
    strings,
    times,
    tuning,
    uuids,
    version,
)

__all__ = [
    "cidr",
    "config_epoch",
    "digest",
    "domain_map",
    "encode",
    "fs",
    "keysource",
    "logfilter",
    "regexes",
    "serde",
    "sleep",
    "strings",
    "times",
    "tuning",
    "uuids",
    "version",
]
