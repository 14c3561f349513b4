"""Where the tests find KumoMTA's example files: the shared reference directory that CI places
beside the checkout (`<repo root>/../shared/reference/kumomta-examples/`), or the directory
named by KUMOCLIENT_KUMOMTA_EXAMPLES. The project does not carry copies of KumoMTA's docs;
a test whose example is not there is skipped, naming the path it looked at."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "KUMOCLIENT_KUMOMTA_EXAMPLES"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT = REPO_ROOT.parent / "shared" / "reference" / "kumomta-examples"


def examples_dir() -> Path:
    """The directory of KumoMTA's example files (the override, else the shared one)."""
    override = os.environ.get(ENV)
    return Path(override) if override else DEFAULT


def kumomta_example(name: str) -> Path:
    """The example file `name` (such as `listener_domains.toml`); skips the calling test when
    it is absent."""
    path = examples_dir() / name
    if not path.is_file():
        pytest.skip(f"KumoMTA's example {name} is not at {path} (set {ENV} to its directory)")
    return path
