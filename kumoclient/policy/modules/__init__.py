"""The `kumo` modules written in Python, and the modules of their own that `require` finds
(`redis`, `sqlite`); importing this package registers them with `policy.api` (each module
registers its own functions)."""

from kumoclient.policy.modules import (
    cidr,
    config_epoch,
    digest,
    dns_lookups,
    dns_resolvers,
    domain_map,
    encode,
    fs,
    http_client,
    keysource,
    redis_db,
    regexes,
    serde,
    sleep,
    sqlite_db,
    strings,
    times,
    uuids,
    version,
    websocket,
)

__all__ = [
    "cidr",
    "config_epoch",
    "digest",
    "dns_lookups",
    "dns_resolvers",
    "domain_map",
    "encode",
    "fs",
    "http_client",
    "keysource",
    "redis_db",
    "regexes",
    "serde",
    "sleep",
    "sqlite_db",
    "strings",
    "times",
    "uuids",
    "version",
    "websocket",
]
