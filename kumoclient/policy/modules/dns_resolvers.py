"""`kumo.dns.define_resolver(NAME, CONFIG)`: resolvers other than the delivery resolver,
by name, for the `OPT_RESOLVER_NAME` argument of the `kumo.dns` lookups.

CONFIG has KumoMTA's forms: `'HickorySystemConfig'` (the system's name servers),
`{Hickory = {name_servers=, domain=, search=, options=}}` (and `{Unbound = ...}`, the same
here), `{Test = {zones=, servfail=}}` (or `{Test = {zone, ...}}`: zone text in memory) and
`{Aggregate = {CONFIG, ...}}` (asked in turn). Names are process-wide, as in KumoMTA: a name
defined again is replaced.
"""

from __future__ import annotations

from typing import Any

from kumoclient.errors import ConfigError
from kumoclient.mx import AggregateUpstream, MxResolver, Upstream, ZoneUpstream, current_resolver
from kumoclient.policy import config_values
from kumoclient.policy.api import kumo_function
from kumoclient.policy.modules import args

WHAT = "kumo.dns.define_resolver"
_SERVER_KEYS = {"name_servers", "domain", "search", "options"}
_OPTIONS = {"timeout", "cache_size"}  # the other hickory options are not supported here
_FORMS = "'HickorySystemConfig', {Hickory={...}}, {Unbound={...}}, {Test={...}}, {Aggregate={...}}"

_RESOLVERS: dict[str, MxResolver] = {}


def resolver_named(what: str, name: Any) -> MxResolver:
    """The resolver `define_resolver` gave `name`; nil: the delivery resolver."""
    if name is None:
        return current_resolver()
    text = args.text(what, name, name="resolver name")
    resolver = _RESOLVERS.get(text)
    if resolver is None:
        raise ConfigError(f"{what}: resolver {text} is not defined")
    return resolver


def _server(where: str, entry: Any) -> str:
    """One `name_servers` entry: `'ip:port'`, or `{socket_addr=, protocol=}`."""
    if isinstance(entry, str):
        return entry
    if not isinstance(entry, dict) or "socket_addr" not in entry:
        raise ConfigError(f"{where}: a name server is 'ip:port' or {{socket_addr='ip:port'}}")
    unknown = set(entry) - {"socket_addr", "protocol", "trust_negative_responses"}
    if unknown:
        raise ConfigError(f"{where}: name server key {sorted(unknown)[0]!r} is not supported")
    if entry.get("protocol", "udp_then_tcp") not in ("udp", "udp_then_tcp"):
        raise ConfigError(f"{where}: protocol {entry['protocol']!r} is not supported")
    if entry.get("trust_negative_responses", True) is not True:
        raise ConfigError(f"{where}: trust_negative_responses = false is not supported")
    return args.text(where, entry["socket_addr"], name="socket_addr")


def _servers(where: str, params: Any) -> MxResolver:
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: expected a table with name_servers")
    unknown = set(params) - _SERVER_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    options = params.get("options") or {}
    if not isinstance(options, dict) or set(options) - _OPTIONS:
        names = sorted(set(options) - _OPTIONS) if isinstance(options, dict) else ["?"]
        raise ConfigError(
            f"{where}: options.{names[0]} is not supported (supported: cache_size, timeout)"
        )
    try:
        servers = config_values.name_servers(
            [_server(where, entry) for entry in params.get("name_servers") or []]
        )
        timeout = config_values.duration(options.get("timeout", "5s"))
        cache_size = config_values.integer(1)(options.get("cache_size", 8192))
    except ValueError as exc:  # config_values.Bad, DurationError
        raise ConfigError(f"{where}: {exc}") from None
    return MxResolver(servers, timeout=timeout, cache_size=cache_size)


def _zones(where: str, params: Any) -> Upstream:
    if isinstance(params, list):
        params = {"zones": params}
    if not isinstance(params, dict) or set(params) - {"zones", "servfail"}:
        raise ConfigError(f"{where}: expected {{zones = {{...}}, servfail = {{...}}}}")
    texts = []
    for entry in params.get("zones") or []:
        zone = entry.get("zone") if isinstance(entry, dict) else entry  # `secure`: no effect
        texts.append(args.text(where, zone, name="zone"))
    servfail = [args.text(where, n, name="servfail name") for n in params.get("servfail") or []]
    try:
        return ZoneUpstream(texts, servfail)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _upstream(where: str, config: Any) -> Upstream:
    if config == "HickorySystemConfig":
        return MxResolver().upstream
    if not isinstance(config, dict) or len(config) != 1:
        raise ConfigError(f"{where}: CONFIG is one of {_FORMS}")
    [(kind, params)] = config.items()
    if kind in ("Hickory", "Unbound"):
        return _servers(f"{where}.{kind}", params).upstream
    if kind == "Test":
        return _zones(f"{where}.Test", params)
    if kind == "Aggregate" and isinstance(params, list):
        return AggregateUpstream(
            [_upstream(f"{where}.Aggregate[{i}]", c) for i, c in enumerate(params)]
        )
    raise ConfigError(f"{where}: CONFIG is one of {_FORMS}")


def build_resolver(where: str, config: Any) -> MxResolver:
    """A resolver for a CONFIG of `define_resolver` (see the module's text)."""
    if isinstance(config, dict) and set(config) in ({"Hickory"}, {"Unbound"}):
        [(kind, params)] = config.items()
        return _servers(f"{where}.{kind}", params)  # its own timeout and cache size
    return MxResolver(upstream=_upstream(where, config))


@kumo_function("dns.define_resolver")
def define_resolver(name: Any, config: Any) -> None:
    """`kumo.dns.define_resolver(NAME, CONFIG)`."""
    text = args.text(WHAT, name, name="NAME")
    _RESOLVERS[text] = build_resolver(f'{WHAT}("{text}")', config)
