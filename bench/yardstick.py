"""KumoMTA's own starting-point policies as the yardstick of kumoclient's policy environment:
each is fetched from a KumoMTA repository at run time, placed in a directory of its own with
KumoMTA's `policy-extras` helpers beside it, and checked with `kumoclient policy check`.

    python bench/yardstick.py --kumomta /path/to/kumomta   # a checkout, or a bare git dir

Nothing of KumoMTA is kept: the files live in a temporary directory for the run. For each
policy the script prints the result and the first failure, and, when the failure is a `kumo`
name or event kumoclient lacks, what docs/kumo-reference.md says of it (which issue brings it).
Exit status: 0 when every policy passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "kumo-reference.md"
HELPERS = "assets/policy-extras"
GUIDE = "docs/userguide/configuration/example.md"
# (label, path in the repository; a Markdown page means its first ```lua block)
POLICIES = [
    ("assets/init.lua", "assets/init.lua"),
    ("user guide example init.lua", GUIDE),
    ("assets/init_with_tsa.lua", "assets/init_with_tsa.lua"),
    ("single-node-docker", "examples/single-node-docker/policy/init.lua"),
    ("docker-swarm", "examples/docker-swarm/policy/init.lua"),
    ("smart-sink-docker", "examples/smart-sink-docker/policy/init.lua"),
    ("simple_policy.lua", "simple_policy.lua"),
]
# what the containers the docker examples are written for set (docker, docker swarm)
CONTAINER = {"HOSTNAME": socket.gethostname(), "SWARM_SLOT": "1"}
_NIL_FIELD = re.compile(r"attempt to (?:call|index) a nil value \(field '([\w.]+)'\)")
_ROW = re.compile(r"^\| `([^`]+)`(?: \(object\))? \| ([a-z ]+) \| (.*) \|$")


class Repository:
    """Files of a KumoMTA repository: a checkout, or a bare git directory (read with git)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bare = not (path / "assets").is_dir()

    def read(self, name: str) -> bytes:
        if not self.bare:
            return (self.path / name).read_bytes()
        return subprocess.run(
            ["git", f"--git-dir={self.path}", "show", f"HEAD:{name}"],
            capture_output=True,
            check=True,
        ).stdout

    def listing(self, folder: str) -> list[str]:
        if not self.bare:
            return sorted(str(p.relative_to(self.path)) for p in (self.path / folder).iterdir())
        done = subprocess.run(
            ["git", f"--git-dir={self.path}", "ls-tree", "--name-only", "HEAD", f"{folder}/"],
            capture_output=True,
            check=True,
            text=True,
        )
        return done.stdout.split()


@dataclass(frozen=True, slots=True)
class Outcome:
    label: str
    passed: bool
    failure: str  # the first error line ("" when it passed)
    needs: str  # what docs/kumo-reference.md says of the missing name ("" when unknown)


def lua_source(repository: Repository, name: str) -> bytes:
    """The policy's text: the file, or the first Lua block of a Markdown page."""
    data = repository.read(name)
    if not name.endswith(".md"):
        return data
    match = re.search(r"```lua\n(.*?)```", data.decode(), re.DOTALL)
    if match is None:
        raise SystemExit(f"{name}: no ```lua block")
    return match[1].encode()


def place(repository: Repository, name: str, folder: Path) -> Path:
    """The policy in `folder` with the helpers beside it (and under assets/, where KumoMTA's
    development policies look for them)."""
    for target in (folder / "policy-extras", folder / HELPERS):
        target.mkdir(parents=True, exist_ok=True)
        for helper in repository.listing(HELPERS):
            (target / Path(helper).name).write_bytes(repository.read(helper))
    policy = folder / "init.lua"
    policy.write_bytes(lua_source(repository, name))
    return policy


def reference() -> dict[str, tuple[str, str]]:
    """docs/kumo-reference.md: name → (status, notes)."""
    found: dict[str, tuple[str, str]] = {}
    for line in REFERENCE.read_text().splitlines():
        match = _ROW.match(line)
        if match is not None:
            found.setdefault(match[1], (match[2].strip(), match[3].strip()))
    return found


def needs(failure: str, table: dict[str, tuple[str, str]]) -> str:
    """What the reference table says of the name or event a failure is about."""
    candidates: list[str] = []
    match = _NIL_FIELD.search(failure)
    if match is not None:
        field = match[1]
        module = sorted(n for n in table if n.startswith(f"kumo.{field}."))
        if module:  # a module of kumo: what its names are
            statuses = sorted({table[n][0] for n in module})
            return f"kumo.{field}.*: {', '.join(statuses)} ({table[module[0]][1]})"
        candidates += [f"kumo.{field}", field]
    candidates += re.findall(r"`?(kumo(?:\.\w+)+)`?", failure)
    candidates += re.findall(r"'([a-z_]+)'", failure)
    for name in candidates:
        known = [name] if name in table else [n for n in table if n.endswith(f".{name}")]
        if len(known) == 1:
            status, notes = table[known[0]]
            return f"{known[0]}: {status}" + (f" ({notes})" if notes else "")
    return ""


def check(label: str, policy: Path) -> Outcome:
    done = subprocess.run(
        [sys.executable, "-m", "kumoclient", "policy", "check", policy.name],
        capture_output=True,
        text=True,
        cwd=policy.parent,
        timeout=120,
        env={**os.environ, **CONTAINER, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    if done.returncode == 0:
        return Outcome(label, True, "", "")
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()] or lines
    failure = errors[0] if errors else f"exit {done.returncode}"
    return Outcome(label, False, failure, needs(failure, reference()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kumomta",
        type=Path,
        default=os.environ.get("KUMOMTA_REPOSITORY"),
        help="a KumoMTA checkout or bare git directory (default: $KUMOMTA_REPOSITORY)",
    )
    options = parser.parse_args()
    if options.kumomta is None:
        parser.error("give --kumomta (or set KUMOMTA_REPOSITORY)")
    repository = Repository(options.kumomta)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="kumomta-yardstick-") as scratch:
        for index, (label, name) in enumerate(POLICIES):
            policy = place(repository, name, Path(scratch) / f"policy{index}")
            outcomes.append(check(label, policy))
    for outcome in outcomes:
        print(f"{outcome.label}: {'pass' if outcome.passed else 'FAIL'}")
        if not outcome.passed:
            print(f"  first failure: {outcome.failure}")
            if outcome.needs:
                print(f"  needs: {outcome.needs}")
    passed = sum(o.passed for o in outcomes)
    print(f"{passed} of {len(outcomes)} pass `kumoclient policy check`")
    return 0 if passed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
