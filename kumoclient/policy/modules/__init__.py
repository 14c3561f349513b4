"""The `kumo` modules written in Python; importing this package registers them with
`policy.api` (each module registers its own functions)."""

from kumoclient.policy.modules import digest, encode, keysource, serde, strings, uuids, version

__all__ = ["digest", "encode", "keysource", "serde", "strings", "uuids", "version"]
