"""docs/kumo-reference.md agrees with what kumoclient has: every `kumo` name a loaded policy
sees, every event kumoclient fires, every module `require` finds and every bundled helper is in
its tables with a status that says so; nothing marked "not yet" is there. A name that arrives
(or leaves) without the page saying so fails here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from kumoclient.policy.events import EVENTS
from kumoclient.policy.paths import share_dir
from kumoclient.policy.runtime import PolicyRuntime

PAGE = Path(__file__).resolve().parents[1] / "docs" / "kumo-reference.md"
STATUSES = {"supported", "partial", "no effect", "not yet", "not planned"}
PRESENT = {"supported", "partial", "no effect"}
_ROW = re.compile(r"^\| `([^`]+)`( \(object\))? \| ([a-z ]+) \|")


def tables() -> dict[str, dict[str, str]]:
    """Section ("events", "modules", "helpers", "names") → name → status."""
    sections: dict[str, dict[str, str]] = {"events": {}, "modules": {}, "helpers": {}, "names": {}}
    current = None
    for line in PAGE.read_text().splitlines():
        if line.startswith("## "):
            title = line[3:].lower()
            current = next((key for key in sections if key[:-1] in title), None)
            if "names" in title:
                current = "names"
            continue
        match = _ROW.match(line)
        if match is None or current is None:
            continue
        name, is_object, status = match[1], match[2], match[3].strip()
        assert status in STATUSES, f"{name}: unknown status {status!r}"
        if is_object:
            name += " (object)"
        assert name not in sections[current], f"{name} is in the {current} table twice"
        sections[current][name] = status
    return sections


TABLES = tables()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> PolicyRuntime:
    policy = tmp_path_factory.mktemp("reference") / "policy.lua"
    policy.write_text("local kumo = require 'kumo'\n")
    return PolicyRuntime(policy)


def kumo_names(runtime: PolicyRuntime) -> set[str]:
    """Every function and value under the `kumo` table (nested tables walked), dotted."""
    walk: Any = runtime.vm.lua.eval(
        """function(root)
          local found, seen = {}, {}
          local function go(t, prefix)
            if seen[t] then return end
            seen[t] = true
            for key, value in pairs(t) do
              if type(key) == 'string' then
                local name = prefix .. '.' .. key
                if type(value) == 'table' and getmetatable(value) == nil then
                  go(value, name)
                else
                  found[#found + 1] = name
                end
              end
            end
          end
          go(root, 'kumo')
          return table.concat(found, ' ')
        end"""
    )
    return set(walk(runtime.vm.lua.globals().kumo).split())


def requirable(runtime: PolicyRuntime, module: str) -> bool:
    check: Any = runtime.vm.lua.eval("function(name) return (pcall(require, name)) end")
    return bool(check(module))


def test_the_page_has_every_kind_of_table() -> None:
    names = TABLES["names"]
    assert len(TABLES["events"]) >= 36
    assert len(names) >= 237  # KumoMTA's documented names, and the undocumented ones
    assert TABLES["modules"]["kumo"] == "supported"
    assert TABLES["helpers"]["typing"] == "supported"


def test_every_registered_kumo_name_is_in_the_table_as_present(runtime: PolicyRuntime) -> None:
    names = TABLES["names"]
    missing = sorted(n for n in kumo_names(runtime) if n not in names)
    assert not missing, f"registered but not in docs/kumo-reference.md: {missing}"
    stale = sorted(n for n in kumo_names(runtime) if names[n] not in PRESENT)
    assert not stale, f"registered now, but the page says 'not yet' (update it): {stale}"


def test_every_name_marked_present_is_registered(runtime: PolicyRuntime) -> None:
    registered = kumo_names(runtime)
    absent = sorted(
        name
        for name, status in TABLES["names"].items()
        if status in PRESENT
        and name.startswith("kumo.")
        and ":" not in name
        and "(object)" not in name
        and name not in registered
    )
    assert not absent, f"marked present in docs/kumo-reference.md, not registered: {absent}"


def test_every_fired_event_is_in_the_table_and_none_marked_present_is_missing() -> None:
    events = TABLES["events"]
    missing = sorted(name for name in EVENTS if name not in events)
    assert not missing, f"kumoclient fires these, the page does not list them: {missing}"
    stale = sorted(name for name in EVENTS if events[name] not in PRESENT)
    assert not stale, f"kumoclient fires these now, the page says 'not yet': {stale}"
    absent = sorted(
        name
        for name, status in events.items()
        if status in PRESENT and not name.startswith("<") and name not in EVENTS
    )
    assert not absent, f"marked present, but kumoclient does not fire them: {absent}"


def test_modules_marked_present_are_requirable_and_the_others_are_not(
    runtime: PolicyRuntime,
) -> None:
    for module, status in TABLES["modules"].items():
        assert requirable(runtime, module) == (status in PRESENT), module


def test_the_bundled_helpers_are_the_ones_marked_supported() -> None:
    bundled = {p.stem for p in (share_dir() / "policy-extras").glob("*.lua")}
    marked = {name for name, status in TABLES["helpers"].items() if status in PRESENT}
    assert bundled == marked
