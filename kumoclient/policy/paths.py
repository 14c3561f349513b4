"""Where a policy's `require` looks, and kumoclient's bundled share directory.

`require 'x.y'` tries, in order: the policy file's directory, /opt/kumomta/etc/policy,
kumoclient's share directory (kumoclient/share: `policy-extras/*.lua`), /opt/kumomta/share,
the entries of KUMOCLIENT_LUA_PATH, then Lua's own default path. Each directory `D` stands for
`D/?.lua;D/?/init.lua`; a KUMOCLIENT_LUA_PATH entry that holds a `?` is taken as a Lua path
template as it is (entries are separated by `;`, as in LUA_PATH).

A file named under /opt/kumomta/share/ that is not there is read from the share directory
instead (`share_path`), so a policy written for a KumoMTA installation runs without one.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

KUMO_ETC_POLICY = "/opt/kumomta/etc/policy"
KUMO_SHARE = "/opt/kumomta/share"
PATH_VARIABLE = "KUMOCLIENT_LUA_PATH"


def share_dir() -> Path:
    """kumoclient's bundled share directory (package data)."""
    return Path(str(resources.files("kumoclient").joinpath("share")))


def _templates(directory: str) -> list[str]:
    return [f"{directory}/?.lua", f"{directory}/?/init.lua"]


def package_path(policy_dir: Path, lua_default: str) -> str:
    """The `package.path` of a policy in `policy_dir` (see the module's text)."""
    templates = [
        *_templates(str(policy_dir)),
        *_templates(KUMO_ETC_POLICY),
        *_templates(str(share_dir())),
        *_templates(KUMO_SHARE),
    ]
    for raw in os.environ.get(PATH_VARIABLE, "").split(";"):
        entry = raw.strip()
        if entry:
            templates.extend([entry] if "?" in entry else _templates(entry.rstrip("/")))
    templates.extend(part for part in lua_default.split(";") if part)
    return ";".join(templates)


def share_path(path: str | Path) -> Path:
    """`path`, or its counterpart in the bundled share directory when it is a file under
    /opt/kumomta/share/ that does not exist."""
    candidate = Path(path)
    under_share = candidate.is_absolute() and candidate.is_relative_to(KUMO_SHARE)
    if under_share and not candidate.exists():
        return share_dir() / candidate.relative_to(KUMO_SHARE)
    return candidate
