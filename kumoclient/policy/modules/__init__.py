"""The `kumo` modules written in Python; importing this package registers them with
`policy.api` (each module registers its own functions)."""

from kumoclient.policy.modules import config_epoch, sleep, version

__all__ = ["config_epoch", "sleep", "version"]
