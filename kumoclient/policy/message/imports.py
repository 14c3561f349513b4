"""Headers into metadata: `msg:import_headers(specs)` and `msg:import_x_headers(names)`
(KumoMTA's rules and error texts).

A spec: `name` (a header name, or a prefix ending in one `*`: `X-*`; case-insensitive),
`match` (`first`, `last` (the default) or `all`: an array of every value), `transform` of the
matched name into the meta key (`snake_case` (the default): lower case, `-` to `_`, so
`X-Campaign-Id` is `x_campaign_id`; `kebab_case`, `camel_case`, `pascal_case`), `target`
(the key itself; exact names only), `remove` (take the matched headers out of the message).
The first spec that matches a header takes it; a spec that matches nothing writes nothing.
`import_x_headers()` is `{name = 'X-*'}`; `import_x_headers{names}` is one exact spec per
name, so a name is the header's own (`'x-campaign-id'` imports `X-Campaign-ID` as
`x_campaign_id`; `'tenant'` imports a `Tenant:` header).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kumoclient.policy.message.headers import Field

MATCHES = ("first", "last", "all")
TRANSFORMS = ("snake_case", "kebab_case", "camel_case", "pascal_case")
_KEYS = frozenset({"name", "match", "transform", "target", "remove"})


@dataclass(frozen=True, slots=True)
class ImportSpec:
    """One compiled spec (see the module's text)."""

    pattern: str  # lower case
    prefix: bool  # True: `pattern` is a prefix (the spec's name ended with `*`)
    match: str = "last"
    transform: str = "snake_case"
    target: str | None = None
    remove: bool = False

    def matches(self, name: str) -> bool:
        """True when this spec takes a header of this name."""
        lower = name.lower()
        return lower.startswith(self.pattern) if self.prefix else lower == self.pattern

    def key(self, name: str) -> str:
        """The meta key of a matched header."""
        return self.target if self.target is not None else transform(name, self.transform)


def compile_specs(value: Any) -> list[ImportSpec]:
    """The specs of `msg:import_headers`; ValueError saying what is wrong."""
    if not isinstance(value, list):
        raise ValueError("import_headers: expected an array of specs")
    return [_spec(item) for item in value]


def _spec(item: Any) -> ImportSpec:
    if not isinstance(item, dict):
        raise ValueError("import_headers: each spec is a table {name = ..., ...}")
    unknown = set(item) - _KEYS
    if unknown:
        raise ValueError(f"import_headers: unknown field `{sorted(unknown)[0]}` in a spec")
    name = item.get("name")
    if not isinstance(name, str):
        raise ValueError("import_headers: a spec needs `name`, a string")
    match, form = item.get("match", "last"), item.get("transform", "snake_case")
    if match not in MATCHES:
        raise ValueError(f"import_headers: match = {match!r}: expected one of {MATCHES}")
    if form not in TRANSFORMS:
        raise ValueError(f"import_headers: transform = {form!r}: expected one of {TRANSFORMS}")
    pattern, prefix = _pattern(name)
    target = item.get("target")
    if target is not None and (prefix or not isinstance(target, str)):
        if prefix:
            raise ValueError(
                f"import_headers: `target` cannot be used with wildcard pattern {name!r}"
            )
        raise ValueError("import_headers: `target` must be a string")
    return ImportSpec(pattern, prefix, match, form, target, bool(item.get("remove", False)))


def _pattern(name: str) -> tuple[str, bool]:
    if not name:
        raise ValueError("import_headers: header name pattern must not be empty")
    stars = name.count("*")
    if stars == 0:
        return name.lower(), False
    if stars > 1 or not name.endswith("*"):
        raise ValueError(f"import_headers: only a single trailing `*` is supported in {name!r}")
    if name == "*":
        raise ValueError("import_headers: bare `*` patterns are not supported")
    return name[:-1].lower(), True


def transform(name: str, form: str) -> str:
    """A header name as a meta key."""
    if form == "snake_case":
        return name.lower().replace("-", "_")
    words = name.split("-")
    if form == "kebab_case":
        return "-".join(word.lower() for word in words)
    titled = [word[:1].upper() + word[1:].lower() for word in words]
    if form == "camel_case":
        return words[0].lower() + "".join(titled[1:])
    return "".join(titled)


def x_header_specs(names: list[str] | None) -> list[ImportSpec]:
    """The specs of `msg:import_x_headers(names)`."""
    if not names:
        return [ImportSpec("x-", True)]
    return [ImportSpec(name.lower(), False) for name in names]


def import_values(fields: list[Field], specs: list[ImportSpec]) -> tuple[dict[str, Any], set[int]]:
    """The meta values the specs take from the fields, and the indexes of the fields to
    remove."""
    found: list[dict[str, Any]] = [{} for _ in specs]
    removed: set[int] = set()
    for index, each in enumerate(fields):
        name = each.name.strip()
        spec_index = next((i for i, spec in enumerate(specs) if spec.matches(name)), None)
        if spec_index is None:
            continue
        spec, values = specs[spec_index], found[spec_index]
        key, value = spec.key(name), each.value
        if spec.match == "first":
            values.setdefault(key, value)
        elif spec.match == "last":
            values[key] = value
        else:
            values.setdefault(key, []).append(value)
        if spec.remove:
            removed.add(index)
    merged: dict[str, Any] = {}
    for values in found:
        merged.update(values)
    return merged, removed
