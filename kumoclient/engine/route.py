"""Where a queue's mail goes: its site (ready-queue name) and the candidate targets to try.

A site is named as KumoMTA names ready queues, `unspecified->{site_name}@smtp_client`, with
`site_name` = `mx_list:` + the entries' labels for an `mx_list` queue, else the MX hosts of
the routing domain factored as KumoMTA does (`(mx1|mx2).example.com`). Domains whose MX
records name the same hosts share a site: one ready queue and one connection limit.
`mx_list` names resolve through the system resolver (so /etc/hosts works for local setups);
MX hosts through the DNS resolver of `kumoclient.mx`.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from kumoclient.mx import DnsLookupError, MxAnswer, MxResolver
from kumoclient.records import (
    EgressPathConfig,
    EnhancedCode,
    MxHost,
    QueueConfig,
    QueueName,
    Reply,
    ResolverConfig,
)
from kumoclient.smtp import Target, resolve

EGRESS_SOURCE = "unspecified"
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Route:
    """The destination of a queue: `site` is the ready-queue name used in records."""

    site: str
    site_name: str
    routing_domain: str
    hosts: tuple[MxHost, ...]
    from_dns: bool = False  # MX hosts: addresses come from the DNS resolver


def _server_name(host: MxHost) -> str:
    """The name a target is known by (TLS verification, logs): the host name, the `name` of
    a `{name=, addr=}` entry, or the address itself for `[addr]` literals."""
    if not host.is_literal:
        return host.host
    if host.name.startswith("[") or host.name.split(":")[0] == host.host or host.name == host.host:
        return host.host
    return host.name


def routing_domain(name: QueueName) -> str:
    """Where a queue's mail is routed: its routing domain, else its domain."""
    return name.routing_domain or name.domain


def route_for(name: QueueName, config: QueueConfig) -> Route:
    """The route of an `mx_list` queue, from its name and queue config."""
    assert config.mx_list is not None
    site_name = "mx_list:" + ",".join(h.name for h in config.mx_list)
    return Route(site(site_name), site_name, routing_domain(name), config.mx_list)


def mx_route(routing: str, answer: MxAnswer) -> Route:
    """The route of a domain from its MX answer (hosts in the order to try them)."""
    domain, _, port = routing.partition(":")  # `example.com:2525` keeps its port
    number = int(port) if port.isdigit() else None
    hosts = tuple(
        MxHost(host, host, number, is_literal=answer.implicit and host != domain)
        for host in answer.hosts
    )
    site_name = factor_names(answer.hosts)
    return Route(site(site_name), site_name, routing, hosts, from_dns=True)


async def dns_route(routing: str, dns: MxResolver) -> Route:
    """The route of a routing domain (`example.com`, or `example.com:2525` keeping the port)
    by its MX records. Raises NullMx or DnsTemporaryFailure (both DnsLookupError)."""
    return mx_route(routing, await dns.resolve(routing.partition(":")[0]))


def resolver_for(config: ResolverConfig | None) -> MxResolver:
    """The DNS resolver `kumo.dns.configure_resolver` asked for (default: the system's)."""
    if config is None:
        return MxResolver()
    return MxResolver(config.name_servers, timeout=config.timeout)


def site(site_name: str) -> str:
    """The ready-queue name of a site."""
    return f"{EGRESS_SOURCE}->{site_name}@smtp_client"


def factor_names(hosts: tuple[str, ...]) -> str:
    """KumoMTA's site name for a set of hosts: labels compared from the right, alternatives
    in parentheses, `?` where some names lack the label:
    `mta5.am0.yahoodns.net, mta6.am0.yahoodns.net` -> `(mta5|mta6).am0.yahoodns.net`."""
    reversed_labels = [host.lower().rstrip(".").split(".")[::-1] for host in hosts]
    depth = max((len(labels) for labels in reversed_labels), default=0)
    parts: list[str] = []
    for index in range(depth):
        seen = sorted({labels[index] for labels in reversed_labels if index < len(labels)})
        optional = any(index >= len(labels) for labels in reversed_labels)
        text = seen[0] if len(seen) == 1 else "(" + "|".join(seen) + ")"
        parts.append(text + "?" if optional else text)
    return ".".join(reversed(parts))


class Prohibited(Exception):
    """A destination address is in `prohibited_hosts`: the whole ready queue bounces."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.reply = Reply(
            550,
            EnhancedCode(5, 4, 4),
            f"KumoMTA internal: {address} is on the list of prohibited_hosts",
        )


@functools.lru_cache(maxsize=64)
def _networks(entries: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def is_prohibited(address: str, entries: tuple[str, ...]) -> bool:
    """True when `address` lies in one of the `prohibited_hosts` ranges."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in _networks(entries))


async def candidates(
    route: Route, egress: EgressPathConfig, dns: MxResolver | None = None
) -> tuple[list[Target], list[str]]:
    """The targets to try in order, and a failure text per host that did not resolve.

    Raises Prohibited when an address is in `prohibited_hosts`.
    """
    targets: list[Target] = []
    failures: list[str] = []
    for host in route.hosts:
        port = host.port if host.port is not None else egress.smtp_port
        if host.is_literal:
            addresses = [host.host]
        elif route.from_dns and dns is not None:
            try:
                addresses = await dns.addresses(host.host)
            except DnsLookupError as exc:
                failures.append(f"{host.name}:{port}: resolve: {exc.text}")
                continue
        else:
            try:
                addresses = await resolve(host.host, port, egress.connect_timeout)
            except TimeoutError:
                failures.append(f"{host.name}:{port}: resolve: timed out")
                continue
            except OSError as exc:
                failures.append(f"{host.name}:{port}: resolve: {exc.strerror or exc}")
                continue
        for address in addresses:
            if is_prohibited(address, egress.prohibited_hosts):
                raise Prohibited(address)
            targets.append(Target(_server_name(host), address, port))
    return targets, failures
