"""`kumo.version` (a string, KumoMTA's `YYYY.MM.DD-<hash>` form) and
`kumo.available_parallelism()`."""

from __future__ import annotations

import os
from importlib import metadata

from kumoclient.policy.api import kumo_function, kumo_value


def _version() -> str:
    try:
        return metadata.version("kumoclient")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0.0.0"


kumo_value("version", _version())


@kumo_function("available_parallelism")
def available_parallelism() -> int:
    """The CPUs this process may use; KUMO_AVAILABLE_PARALLELISM overrides, as in KumoMTA."""
    override = os.environ.get("KUMO_AVAILABLE_PARALLELISM", "")
    if override.isdigit() and int(override) > 0:
        return int(override)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
