"""Where a queue's mail goes: its site (ready-queue name) and the candidate targets to try.

A site is named as KumoMTA names ready queues, `unspecified->{site_name}@smtp_client`, with
`site_name` = `mx_list:` + the entries' labels for an `mx_list` queue, else the routing
domain (DNS MX resolution comes with the routing issue; until then the routing domain's own
addresses are its implicit MX, RFC 5321 5.1). Queues whose destinations are the same share a
site: one ready queue and one connection limit.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from kumoclient.records import EgressPathConfig, EnhancedCode, MxHost, QueueConfig, QueueName, Reply
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


def _server_name(host: MxHost) -> str:
    """The name a target is known by (TLS verification, logs): the host name, the `name` of
    a `{name=, addr=}` entry, or the address itself for `[addr]` literals."""
    if not host.is_literal:
        return host.host
    if host.name.startswith("[") or host.name.split(":")[0] == host.host or host.name == host.host:
        return host.host
    return host.name


def route_for(name: QueueName, config: QueueConfig) -> Route:
    """The route of a queue from its name and queue config."""
    routing = name.routing_domain or name.domain
    if config.mx_list is not None:
        site_name = "mx_list:" + ",".join(h.name for h in config.mx_list)
        hosts = config.mx_list
    else:
        domain, _, port = routing.partition(":")
        site_name = routing
        hosts = (MxHost(domain, domain, int(port) if port.isdigit() else None),)
    return Route(f"{EGRESS_SOURCE}->{site_name}@smtp_client", site_name, routing, hosts)


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


async def candidates(route: Route, egress: EgressPathConfig) -> tuple[list[Target], list[str]]:
    """The targets to try in order, and a failure text per host that did not resolve.

    Raises Prohibited when an address is in `prohibited_hosts`.
    """
    targets: list[Target] = []
    failures: list[str] = []
    for host in route.hosts:
        port = host.port if host.port is not None else egress.smtp_port
        if host.is_literal:
            addresses = [host.host]
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
