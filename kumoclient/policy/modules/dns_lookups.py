"""`kumo.dns.*` lookups: `lookup_mx`, `lookup_addr`, `lookup_txt`, `lookup_ptr`, `rbl_lookup`
(they wait: the handler is suspended while the daemon goes on), and `ptr_host`, `reverse_ip`.

They ask the delivery resolver (`mx.current_resolver()`: the running engine's, with its cache),
or the resolver `kumo.dns.define_resolver` gave the name passed as `OPT_RESOLVER_NAME`.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from kumoclient.core.site_name import factor_names
from kumoclient.errors import ConfigError, DnsLookupError
from kumoclient.mx import STRATEGIES, hosts_file_addresses
from kumoclient.policy.api import Values, kumo_function
from kumoclient.policy.modules import args
from kumoclient.policy.modules.dns_resolvers import resolver_named

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(what: str, value: Any) -> IpAddress:
    text = args.text(what, value, name="IP")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(f"{what}: {text!r} is not an IP address") from None


def reversed_ip(ip: IpAddress) -> str:
    """The address's labels in reverse: `1.0.0.127`; IPv6 nibble by nibble."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ".".join(reversed(str(ip).split(".")))
    return ".".join(reversed(ip.exploded.replace(":", "")))


@kumo_function("dns.reverse_ip")
def reverse_ip(ip: Any) -> str:
    """`kumo.dns.reverse_ip(IP)`."""
    return reversed_ip(_ip("kumo.dns.reverse_ip", ip))


@kumo_function("dns.ptr_host")
def ptr_host(ip: Any) -> str:
    """`kumo.dns.ptr_host(IP)`: the name of the address's PTR record."""
    address = _ip("kumo.dns.ptr_host", ip)
    suffix = "in-addr.arpa" if isinstance(address, ipaddress.IPv4Address) else "ip6.arpa"
    return f"{reversed_ip(address)}.{suffix}"


def _colon_port(text: str) -> tuple[str, int | None]:
    """`name:25` → (`name`, 25); a text whose part before the colon has a colon (IPv6), or
    whose port is not a port number, is kept whole."""
    label, sep, port = text.rpartition(":")
    if sep and ":" not in label and port.isdigit() and int(port) < 65536:
        return label, int(port)
    return text, None


def _literal_mx(what: str, domain: str, inner: str, port: int | None) -> dict[str, Any]:
    """lookup_mx of `[address]`: the address itself, not looked up."""
    inner, inner_port = _colon_port(inner)
    if inner_port is not None and port is not None:
        raise ConfigError(f"{what}: {domain!r} gives a port inside and outside the brackets")
    port = port if port is not None else inner_port
    text = inner[5:] if inner.lower().startswith("ipv6:") else inner
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(f"{what}: invalid address {text!r} in {domain!r}") from None
    host = str(address)
    if port is not None:
        host = f"[{host}]:{port}" if address.version == 6 else f"{host}:{port}"
    return {
        "domain_name": domain,
        "hosts": [host],
        "site_name": host,
        "by_pref": {1: [host]},
        "is_domain_literal": True,
        "is_secure": False,
        "is_mx": False,
        "mta_sts": "None",
    }


@kumo_function("dns.lookup_mx")
async def lookup_mx(domain: Any, resolver_name: Any = None) -> dict[str, Any]:
    """`kumo.dns.lookup_mx(DOMAIN, OPT_RESOLVER_NAME)`: the MX information of DOMAIN."""
    what = "kumo.dns.lookup_mx"
    text = args.text(what, domain, name="DOMAIN")
    name, port = _colon_port(text)
    if name.startswith("["):
        if not name.endswith("]"):
            raise ConfigError(f"{what}: {text!r} is a literal with no closing ']'")
        return _literal_mx(what, text, name[1:-1], port)
    resolver = resolver_named(what, resolver_name)
    answer = await resolver.exchangers(name)
    suffix = "" if port is None else f":{port}"
    by_pref: dict[int, list[str]] = {}
    for preference, host in answer.records:
        shown = host if host == "." else f"{host}."
        by_pref.setdefault(preference, []).append(shown + suffix)
    hosts = [host for _, host in answer.records]
    return {
        "domain_name": answer.domain,
        "hosts": [host for group in by_pref.values() for host in group],
        "site_name": factor_names(hosts) + suffix,
        "by_pref": by_pref,
        "is_domain_literal": False,
        "is_secure": False,
        "is_mx": not answer.implicit,
        "mta_sts": "None",
    }


@kumo_function("dns.lookup_addr")
async def lookup_addr(name: Any, resolver_name: Any = None, strategy: Any = None) -> list[str]:
    """`kumo.dns.lookup_addr(NAME, OPT_RESOLVER_NAME, OPT_STRATEGY)`: the IPv4 and IPv6
    addresses of NAME (a literal `[address]` or an address: itself)."""
    what = "kumo.dns.lookup_addr"
    text = args.text(what, name, name="NAME")
    order = "Ipv4AndIpv6" if strategy is None else args.text(what, strategy, name="strategy")
    if order not in STRATEGIES:
        names = ", ".join(STRATEGIES)
        raise ConfigError(f"{what}: unknown strategy {order!r} (one of {names})")
    if text.startswith("[") and not text.endswith("]"):
        raise ConfigError(f"{what}: {text!r} is a literal with no closing ']'")
    if resolver_name is None:  # the system's resolver reads the hosts file first
        known = _by_strategy(hosts_file_addresses(text), order)
        if known:
            return known
    return await resolver_named(what, resolver_name).addresses(text, order)


def _by_strategy(addresses: list[str], strategy: str) -> list[str]:
    """The addresses (IPv4 first) a lookup by `strategy` gives."""
    v4 = [a for a in addresses if ":" not in a]
    v6 = [a for a in addresses if ":" in a]
    families, fallback = STRATEGIES[strategy]
    ordered = [v4 if family == "A" else v6 for family in families]
    if fallback:
        return ordered[0] or ordered[1]
    return [a for group in ordered for a in group]


@kumo_function("dns.lookup_txt")
async def lookup_txt(domain: Any, resolver_name: Any = None) -> list[str]:
    """`kumo.dns.lookup_txt(DOMAIN, OPT_RESOLVER_NAME)`: the TXT records, each one string."""
    what = "kumo.dns.lookup_txt"
    text = args.text(what, domain, name="DOMAIN")
    return await resolver_named(what, resolver_name).records(text, "TXT")


@kumo_function("dns.lookup_ptr")
async def lookup_ptr(ip: Any, resolver_name: Any = None) -> list[str]:
    """`kumo.dns.lookup_ptr(IP, OPT_RESOLVER_NAME)`: the PTR names (empty when there are
    none, the address's name included)."""
    what = "kumo.dns.lookup_ptr"
    name = ptr_host(_ip(what, ip).compressed)
    resolver = resolver_named(what, resolver_name)
    return await resolver.records(name + ".", "PTR", nxdomain_ok=True)


def _rbl_address(what: str, value: Any) -> IpAddress:
    """An address, `address:port` or `[address]:port`, as rbl_lookup takes it."""
    text = args.text(what, value, name="IP")
    candidates = [text]
    host, _, port = text.rpartition(":")
    if host and port.isdigit():
        candidates.append(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    for candidate in candidates:
        try:
            return ipaddress.ip_address(candidate)
        except ValueError:
            continue
    raise ConfigError(f"{what}: {text} is not a valid IpAddr or SocketAddr")


@kumo_function("dns.rbl_lookup")
async def rbl_lookup(ip: Any, base_domain: Any, resolver_name: Any = None) -> Values:
    """`kumo.dns.rbl_lookup(IP, BASE_DOMAIN, OPT_RESOLVER_NAME)`: the address the list gives
    for IP and its TXT text, or nil, nil when IP is not listed."""
    what = "kumo.dns.rbl_lookup"
    address = _rbl_address(what, ip)
    base = args.text(what, base_domain, name="BASE_DOMAIN").rstrip(".")
    name = f"{reversed_ip(address)}.{base}."
    resolver = resolver_named(what, resolver_name)
    listed = await resolver.records(name, "A", nxdomain_ok=True)
    if not listed:
        listed = await resolver.records(name, "AAAA", nxdomain_ok=True)
    if not listed:
        return Values((None, None))
    try:  # the reason is best effort: a failed TXT lookup gives nil, none gives ''
        reason: str | None = "".join(await resolver.records(name, "TXT", nxdomain_ok=True))
    except DnsLookupError:
        reason = None
    return Values((listed[0], reason))
