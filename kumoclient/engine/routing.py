"""Routing: where a queue's mail goes — its queue config, its `mx_list` or the MX of its
routing domain, its egress path, its site (ready queue) — and the candidate targets to try.

A site is named as KumoMTA names ready queues, `unspecified->{site_name}@smtp_client`, with
`site_name` = `mx_list:` + the entries' labels for an `mx_list` queue, else the MX hosts of
the routing domain factored as KumoMTA does (`(mx1|mx2).example.com`). Domains whose MX
records name the same hosts share a site: one ready queue and one connection limit.
`mx_list` names resolve through the system resolver (so /etc/hosts works for local setups);
MX hosts through the DNS resolver of `kumoclient.mx`.

`Router.route(item)` decides for a message that came due: it asks the policy for the queue
config (`get_queue_config`, cached per queue and policy generation) and, for the site, for the
egress path (`get_egress_path_config`, cached per site and generation). A queue without
`mx_list` waits for its routing domain's MX lookup. Each of the three waits parks the message
in the message table, one lookup for every message that needs the same answer (a policy
handler may itself wait: DNS, HTTP); a known answer routes at once. The outcome goes to one of
two callbacks: `ready(item, site)`, or `failed(item, attempt)` with the made-up reply of a null
MX (Bounce), a DNS failure or a failing policy event (TransientFailure, retried later with the
reason; an aborted handler too).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from kumoclient import logs
from kumoclient.configs import EgressPathConfig, MxHost, QueueConfig, ResolverConfig
from kumoclient.core.disposition import Attempt, failed
from kumoclient.core.site_name import factor_names
from kumoclient.core.synthesized import Synthesized, synthesize
from kumoclient.engine.queues import Item, Route, Site
from kumoclient.engine.table import MessageTable
from kumoclient.errors import DnsLookupError, DnsTemporaryFailure, NullMx, PolicyError
from kumoclient.mx import MxAnswer, MxResolver, system_addresses
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.records import QueueName
from kumoclient.smtp import Target
from kumoclient.throttles import SharedThrottles

log = logs.get_logger(__name__)

EGRESS_SOURCE = "unspecified"
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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


@dataclass(frozen=True, slots=True)
class Candidates:
    """The targets to try in order, a failure text per host that did not resolve, and the
    first address found in `prohibited_hosts` (the whole site then bounces)."""

    targets: list[Target]
    failures: list[str]
    prohibited: str | None = None


async def candidates(
    route: Route, egress: EgressPathConfig, dns: MxResolver | None = None
) -> Candidates:
    """The targets of a route: literal addresses as they are, MX hosts through the DNS
    resolver, `mx_list` names through the system resolver."""
    found = Candidates([], [])
    for host in route.hosts:
        port = host.port if host.port is not None else egress.smtp_port
        try:
            if host.is_literal:
                addresses = [host.host]
            elif route.from_dns and dns is not None:
                addresses = await dns.addresses(host.host)
            else:
                addresses = await system_addresses(host.host, port, egress.connect_timeout)
        except DnsTemporaryFailure as exc:
            reason = exc.text if route.from_dns else exc.reason
            found.failures.append(f"{host.name}:{port}: resolve: {reason}")
            continue
        except DnsLookupError as exc:
            found.failures.append(f"{host.name}:{port}: resolve: {exc.text}")
            continue
        for address in addresses:
            if is_prohibited(address, egress.prohibited_hosts):
                return Candidates(found.targets, found.failures, address)
            found.targets.append(Target(_server_name(host), address, port))
    return found


Ready = Callable[[Item, Site], None]
Failed = Callable[[Item, Attempt], None]
Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


class Router:
    """Decides the site of each message that comes due (see the module's text)."""

    def __init__(
        self,
        policy: PolicyHolder,
        dns: MxResolver,
        throttles: SharedThrottles,
        table: MessageTable,
        *,
        ready: Ready,
        failed: Failed,
        spawn: Spawn,
    ) -> None:
        self.policy = policy
        self.dns = dns
        self.throttles = throttles
        self.table = table
        self._ready = ready
        self._failed = failed
        self._spawn = spawn
        self._configs: dict[str, tuple[int, QueueConfig]] = {}
        self._lookups: set[asyncio.Task[None]] = set()
        self.stopping = False

    def route(self, item: Item) -> None:
        """Send `item` on: to its site now, or once its queue config, its routing domain's MX
        or its site's egress path is known (the item is parked meanwhile, one lookup for all
        the items that need the same answer)."""
        config = self._known_config(item.queue)
        if config is not None:
            self._with_config(item, config)
            return
        key = f"queue-config {item.queue}"  # a space: never a routing domain
        if self.table.await_route(key, item):
            self._start(self._ask_queue_config(key, item), key)

    def _known_config(self, queue: str) -> QueueConfig | None:
        """The queue's config when asked of the current policy already."""
        cached = self._configs.get(queue)
        if cached is not None and cached[0] == self.policy.generation:
            return cached[1]
        return None

    async def _ask_queue_config(self, key: str, first: Item) -> None:
        generation = self.policy.generation
        result: QueueConfig | PolicyError
        try:
            result = await self.policy.current.get_queue_config(first.name)
        except PolicyError as exc:
            result = exc
        else:
            self._configs[first.queue] = (generation, result)
        items = self.table.routed(key)
        if self.stopping:
            return  # the messages stay spooled
        for item in items:
            if isinstance(result, PolicyError):
                self._policy_failed(item, result)
            else:
                self._with_config(item, result)

    def _with_config(self, item: Item, config: QueueConfig) -> None:
        item.config = config
        if config.mx_list is None:
            self._by_dns(item)
        else:
            self._to_site(item, route_for(item.name, config))

    def _to_site(self, item: Item, route: Route) -> None:
        """The item to its site's ready queue, once the site's egress path is known."""
        site = self.table.site(route.site)
        if site is not None and site.generation == self.policy.generation:
            site.route = route  # the latest order of the MX hosts
            self._ready(item, site)
            return
        key = f"egress-path {route.site}"
        if self.table.await_route(key, item):
            self._start(self._ask_egress_path(key, route), key)

    async def _ask_egress_path(self, key: str, route: Route) -> None:
        generation = self.policy.generation
        result: Site | PolicyError
        try:
            egress = await self.policy.current.get_egress_path_config(
                route.routing_domain, EGRESS_SOURCE, route.site_name
            )
        except PolicyError as exc:
            result = exc
        else:
            result = self._configured_site(route, egress, generation)
        items = self.table.routed(key)
        if self.stopping:
            return
        for item in items:
            if isinstance(result, PolicyError):
                self._policy_failed(item, result)
            else:
                self._ready(item, result)

    def _configured_site(self, route: Route, egress: EgressPathConfig, generation: int) -> Site:
        site = self.table.site(route.site)
        if site is None:
            return self.table.add_site(Site(route, egress, generation, self.throttles))
        site.configure(egress, generation)
        site.route = route
        return site

    def _policy_failed(self, item: Item, exc: PolicyError) -> None:
        log.error("policy failed while routing; retrying later", id=item.message.id, error=str(exc))
        self._failed(item, failed(synthesize(Synthesized.POLICY_FAILURE, error=exc)))

    def _by_dns(self, item: Item) -> None:
        domain = routing_domain(item.name)
        if self.table.await_route(domain, item):
            self._start(self._resolve(domain), f"mx {domain}")

    def _start(self, lookup: Coroutine[Any, Any, None], name: str) -> None:
        task = self._spawn(lookup, name)
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

    async def _resolve(self, domain: str) -> None:
        result: Route | DnsLookupError
        try:
            result = await dns_route(domain, self.dns)
        except DnsLookupError as exc:
            result = exc
        items = self.table.routed(domain)
        if self.stopping:
            return  # the messages stay spooled
        for item in items:
            if isinstance(result, NullMx):
                self._failed(item, failed(synthesize(Synthesized.NULL_MX)))
            elif isinstance(result, DnsLookupError):
                reply = synthesize(Synthesized.DNS_FAILURE, queue=item.queue, reason=result.text)
                self._failed(item, failed(reply))
            else:
                self._to_site(item, result)

    def stop(self) -> None:
        """Cancel the lookups in flight (their messages stay spooled)."""
        self.stopping = True
        for lookup in self._lookups:
            lookup.cancel()
