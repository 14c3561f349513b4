"""Lua policies shipped inside the package (the default policy; `policies/` at the top level)."""

from importlib import resources
from pathlib import Path


def default_policy_path() -> Path:
    """The path of the built-in default policy file."""
    return Path(str(resources.files("kumoclient.policies").joinpath("default.lua")))
