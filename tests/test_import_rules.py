"""The one-way import rule of DESIGN.md, enforced by parsing every module's imports.

cli → commands → daemon → engine → {spool, smtp, mx, policy, listener, http, throttles} →
logs → core → {records, configs, errors}; one adapter uses another: policy uses mx (kumo.dns).
A module may import its own component and the components below it, never above or beside.
Foreign libraries stay at their boundary: lupa only in policy/, aiosmtplib only in two modules
of smtp/ (protocol.py extends it, channel.py is the one that catches its errors), aiosmtpd only
in testing/ (the scripted MX), redis only in throttles/ and policy/modules/redis_db.py. A boundary names a component
(`policy`) or one module (`smtp.channel`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "kumoclient"

_BASE = {"errors", "records", "configs"}
_CORE = _BASE | {"core"}
_LOGGED = _CORE | {"logs"}
_ADAPTERS = {"spool", "smtp", "mx", "policy", "listener", "http", "throttles"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "records": {"errors"},
    "configs": set(),
    "policies": set(),  # data files and their path
    "core": _CORE,
    "logs": _CORE | {"logs"},
    **{adapter: _LOGGED | {adapter} for adapter in _ADAPTERS},
    # the policy's kumo.dns asks the delivery resolver (mx.current_resolver) and defines
    # resolvers of its own (kumo.dns.define_resolver); mx imports no other adapter
    "policy": _LOGGED | {"policy", "mx"},
    "engine": _LOGGED | _ADAPTERS | {"engine", "policies"},
    "daemon": _LOGGED | _ADAPTERS | {"engine", "daemon", "policies"},
    "commands": _LOGGED | _ADAPTERS | {"engine", "daemon", "commands", "policies"},
    "testing": _LOGGED | _ADAPTERS | {"engine", "testing", "policies"},
    "cli": _LOGGED | _ADAPTERS | {"engine", "daemon", "commands", "cli", "policies"},
    "__main__": {"cli"},
    "__init__": _LOGGED | _ADAPTERS | {"engine", "policies"},
}
BOUNDARIES = {
    "lupa": {"policy"},
    # smtp/protocol.py extends its protocol and client; smtp/channel.py catches its errors
    "aiosmtplib": {"smtp.protocol", "smtp.channel"},
    # testing's scripted MX (the pytest plugin for policy tests); the listener has its own
    # server (docs/performance.md: aiosmtpd's sessions cost 0.8 ms of CPU each)
    "aiosmtpd": {"testing"},
    # throttles shared through Redis (kumo.configure_redis_throttles); the policy's
    # `require 'redis'` (redis.open)
    "redis": {"throttles", "policy.modules.redis_db"},
}


def component(module: Path) -> str:
    parts = module.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def dotted(module: Path) -> str:
    """`smtp.channel` for kumoclient/smtp/channel.py."""
    return ".".join(module.relative_to(PACKAGE).with_suffix("").parts)


def imported_names(module: Path) -> list[str]:
    tree = ast.parse(module.read_text(), filename=str(module))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(
                f"{node.module}.{alias.name}" for alias in node.names if node.module == "kumoclient"
            )
    return names


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_component_is_known() -> None:
    unknown = {component(m) for m in MODULES} - set(ALLOWED)
    assert not unknown, f"add these components to ALLOWED: {unknown}"


@pytest.mark.parametrize("module", MODULES, ids=lambda m: str(m.relative_to(PACKAGE)))
def test_imports_flow_one_way(module: Path) -> None:
    mine = component(module)
    for name in imported_names(module):
        top, _, rest = name.partition(".")
        if top == "kumoclient" and rest:
            target = rest.split(".")[0]
            assert target in ALLOWED[mine], f"{mine} must not import {name}"
        elif top in BOUNDARIES:
            allowed = BOUNDARIES[top]
            assert mine in allowed or dotted(module) in allowed, (
                f"{name} may only be imported by {allowed}"
            )


def test_the_rule_catches_a_violation(tmp_path: Path) -> None:
    """The checker itself can fail: a core module importing policy is reported."""
    fake = tmp_path / "bad.py"
    fake.write_text("from kumoclient.policy import runtime\nimport lupa\n")
    names = imported_names(fake)
    assert "kumoclient.policy" in names
    assert "policy" not in ALLOWED["core"]
    assert "core" not in BOUNDARIES["lupa"]


def test_a_boundary_can_be_one_module_of_a_component() -> None:
    """aiosmtplib is allowed in smtp/channel.py, not in the rest of smtp/."""
    channel = PACKAGE / "smtp" / "channel.py"
    transaction = PACKAGE / "smtp" / "transaction.py"
    assert "aiosmtplib" in imported_names(channel)
    assert dotted(channel) in BOUNDARIES["aiosmtplib"]
    assert component(transaction) not in BOUNDARIES["aiosmtplib"]
    assert dotted(transaction) not in BOUNDARIES["aiosmtplib"]


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        ("engine", "daemon"),
        ("engine", "commands"),
        ("daemon", "commands"),
        ("commands", "cli"),
        ("http", "engine"),
        ("http", "policy"),
        ("http", "daemon"),
    ],
)
def test_the_order_runs_one_way(lower: str, upper: str) -> None:
    """cli → commands → daemon → engine → adapters: never back up, and the HTTP adapter
    knows nothing of the engine or the policy (it gets what it needs passed in)."""
    assert upper not in ALLOWED[lower]


# --- inside the sub-packages: layers, top first ------------------------------------------------
# A module may import modules of its own sub-package in lower layers only (never a module of
# its own layer or above). `__init__` re-exports and may import any of its package. An import
# under `if TYPE_CHECKING:` names a type for annotations only and is not counted.
# A package inside a sub-package (`policy.modules`) has layers of its own, and is one unit in
# its parent's layers: its modules import the parent's modules below that unit, and each other
# by their own layers. (policy/lua/ holds the Lua chunks: files vm.py reads, not imports.)
LAYERS: dict[str, list[set[str]]] = {
    "core": [
        {
            "disposition",
            "dsn",
            "log_record",
            "smtp_server",
            "report_records",
            "listener_domain",
        },
        {
            "classify",
            "reply",
            "retry",
            "synthesized",
            "address",
            "dsn_report",
            "arf_report",
            "listener_params",
            "meta",
        },
        {
            "report_fields",
            "smtp_auth",
            "trace_headers",
            "duration",
            "listen",
            "msgid",
            "nameserver",
            "networks",
            "queue_name",
            "schedule",
            "selector",
            "site_name",
            "template",
            "throttle",
        },
    ],
    "engine": [
        {"engine"},
        {"dispatch"},
        {"sessions"},
        {"routing", "control", "reception"},
        {"dispositions", "smtp_intake"},
        {"state", "table", "recovery", "smtp_policy"},
        {"queues", "metrics", "accounting"},
    ],
    "spool": [
        {"local"},
        {"commit", "space"},
        {"drops", "reading"},
        {"pool", "disk", "entry"},
        {"fields"},
    ],
    "http": [{"inject", "admin"}, {"inject_message", "server"}, {"inject_request", "tls"}],
    "listener": [
        {"server"},
        {"session"},
        {"commands", "data", "opening"},
        {"asks", "auth"},
        {"replies"},
        {"shared"},
        {"connection", "limits"},
    ],
    "testing": [{"fixtures"}, {"engine"}, {"mx", "records"}],
    "commands": [
        {"admin", "inject", "policy_check", "policy_rewrite", "queue", "run", "send"},
        {"admin_client", "inputs", "exits"},
    ],
    "daemon": [{"daemon"}, {"layout", "workers"}, {"signals"}],
    "mx": [{"resolver", "system"}, {"zones"}, {"upstream"}],
    "logs": [{"record_log"}, {"health", "filter"}],
    "throttles": [{"shared"}, {"redis_scripts"}],
    "smtp": [{"session"}, {"opening", "transaction"}, {"channel"}, {"protocol"}, {"values"}],
    "policy": [
        {"check", "smtp_events"},
        {"runtime"},
        {"vm"},
        {"host"},
        {"event_host", "memo_host", "regex_map"},
        {"config", "limits", "memoize", "message", "modules"},
        {"listener_config", "conn_meta", "spool_params"},
        {
            "api",
            "config_values",
            "convert",
            "epoch",
            "events",
            "paths",
            "popen",
            "results",
            "tasks",
        },
    ],
    "policy.message": [
        {"message"},
        {"content"},
        {"mime_objects"},
        {"addresses", "conformance", "imports"},
        {"mime"},
        {"structured"},
        {"headers"},
    ],
    "policy.modules": [
        {"digest", "fs", "dns_lookups", "http_client", "websocket"},
        {
            "cidr",
            "config_epoch",
            "dns_resolvers",
            "http_response",
            "redis_db",
            "sqlite_db",
            "domain_map",
            "encode",
            "keysource",
            "logfilter",
            "regexes",
            "serde",
            "sleep",
            "strings",
            "times",
            "tuning",
            "uuids",
            "version",
        },
        {"args", "loop_resources", "rust_regex", "strftime", "yaml12"},
        {"rust_regex_lexer"},
    ],
}


def _layer(package: str, module: str) -> int:
    for index, layer in enumerate(LAYERS[package]):
        if module in layer:
            return index
    raise AssertionError(f"{package}/{module}.py has no layer: add it to LAYERS")


def _type_only(tree: ast.Module) -> set[int]:
    """The ids of the nodes under `if TYPE_CHECKING:` (type hints only: no import at run time)."""
    hidden: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            hidden.update(id(inner) for body in node.body for inner in ast.walk(body))
    return hidden


def _packages(module: Path) -> list[tuple[str, str]]:
    """Each layered package `module` is inside, with the unit it is there: for
    policy/modules/serde.py, ("policy", "modules") and ("policy.modules", "serde")."""
    parts = module.relative_to(PACKAGE).with_suffix("").parts
    return [
        (".".join(parts[:depth]), parts[depth])
        for depth in range(1, len(parts))
        if ".".join(parts[:depth]) in LAYERS
    ]


def _inner_imports(module: Path) -> list[str]:
    """The kumoclient modules (dotted, below `kumoclient.`) `module` imports at run time, each
    `from X import name` as X.name (a name may be a module)."""
    found: list[str] = []
    tree = ast.parse(module.read_text(), filename=str(module))
    hidden = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top, _, rest = node.module.partition(".")
            if top == "kumoclient" and rest:
                found.extend(f"{rest}.{alias.name}" for alias in node.names)
    return found


def _unit(package: str, target: str) -> str | None:
    """The unit of `package` that the dotted `target` lies in (None: outside the package)."""
    prefix = package + "."
    if not target.startswith(prefix):
        return None
    return target[len(prefix) :].split(".", maxsplit=1)[0]


LAYERED = [m for m in MODULES if _packages(m) and m.stem != "__init__"]


@pytest.mark.parametrize("module", LAYERED, ids=lambda m: str(m.relative_to(PACKAGE)))
def test_a_sub_package_imports_only_its_lower_layers(module: Path) -> None:
    for package, mine in _packages(module):
        layer = _layer(package, mine)
        for target in _inner_imports(module):
            unit = _unit(package, target)
            if unit is None or unit == mine:
                continue
            assert _layer(package, unit) > layer, (
                f"{package}/{mine} must not import {package}/{unit}: it is not in a lower layer"
            )


def test_the_layer_rule_catches_a_sideways_import() -> None:
    """The checker itself can fail: routing importing control (same layer) is refused."""
    assert _layer("engine", "control") == _layer("engine", "routing")
    assert not _layer("engine", "dispatch") > _layer("engine", "dispositions")  # upward


def test_a_package_inside_a_sub_package_is_one_unit_of_it(tmp_path: Path) -> None:
    """policy/modules/ is the unit `modules` of policy: a module there may import policy.api
    (below it) but not policy.host (above it); among themselves its modules have layers."""
    serde = PACKAGE / "policy" / "modules" / "serde.py"
    assert _packages(serde) == [("policy", "modules"), ("policy.modules", "serde")]
    assert _layer("policy", "api") > _layer("policy", "modules")
    assert not _layer("policy", "host") > _layer("policy", "modules")
    assert not _layer("policy.modules", "digest") > _layer("policy.modules", "encode")
    fake = tmp_path / "bad.py"
    fake.write_text("from kumoclient.policy.host import Host\nfrom kumoclient.policy import vm\n")
    assert _inner_imports(fake) == ["policy.host.Host", "policy.vm"]
    assert _unit("policy", "policy.host.Host") == "host"
    assert _unit("policy.modules", "policy.host.Host") is None
