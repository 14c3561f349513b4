"""The resolver with its cache: MX and address resolution for delivery (SPEC 2.1), and the
lookups of the policy's `kumo.dns` on the same resolver and cache.

`MxResolver.resolve(domain)` gives the hosts to try in order: MX records by ascending
preference, shuffled within a preference. A domain without MX records (NODATA) is its own
implicit MX. A null MX (RFC 7505) raises `NullMx` (a Bounce `556 5.1.10`); NXDOMAIN and every
DNS failure raise `DnsTemporaryFailure` (a TransientFailure `451 4.4.4`, never a bounce).
`MxResolver.addresses(host)` gives a host's A then AAAA addresses. `exchangers` (the MX records
as published) and `records` (any record type) serve `kumo.dns`.

Answers are cached for their TTL (the smallest TTL of the answer, CNAMEs included; for NODATA
the SOA's negative TTL); failures for `negative_ttl` seconds. The cache is an LRU bounded by
`cache_size` entries, and concurrent lookups of the same name on one event loop share one query.

`current_resolver()` is the engine's resolver (`use_resolver`, called by the engine when it is
made, before the reception workers fork; `forget_resolver` when it stops), which the policy's
`kumo.dns` functions use; without an engine (a policy loading before the daemon's engine is
made, `init`, `kumoclient policy check`) it is one of the system's configuration, made on
first use.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rdatatype

from kumoclient.errors import DnsTemporaryFailure, NullMx
from kumoclient.mx.upstream import NULL_HOST, Failure, NetworkUpstream, Outcome, Records, Upstream

DEFAULT_TIMEOUT = 5.0
DEFAULT_NEGATIVE_TTL = 30.0
DEFAULT_CACHE_SIZE = 10_000

# what `addresses` asks, per KumoMTA's ip_lookup_strategy: the families in order, and whether
# the second is asked only when the first gave no address
STRATEGIES: dict[str, tuple[tuple[str, ...], bool]] = {
    "Ipv4AndIpv6": (("A", "AAAA"), False),
    "Ipv4Only": (("A",), False),
    "Ipv6Only": (("AAAA",), False),
    "Ipv4ThenIpv6": (("A", "AAAA"), True),
    "Ipv6ThenIpv4": (("AAAA", "A"), True),
}


@dataclass(frozen=True, slots=True)
class MxAnswer:
    """The hosts to try, in order, for a domain.

    `hosts` are lower-case names without the trailing dot (or an address, for a domain
    literal); `preferences[i]` is the MX preference of `hosts[i]`. `implicit` is true when
    the domain had no MX records and is its own mail exchanger (or is a domain literal).
    """

    domain: str
    hosts: tuple[str, ...]
    preferences: tuple[int, ...]
    implicit: bool


@dataclass(frozen=True, slots=True)
class MxRecords:
    """A domain's MX records as published (`kumo.dns.lookup_mx`): `domain` the name looked up
    (lower case, with its final dot), `records` (preference, host) by preference then host,
    hosts lower case without the final dot (`.` for a null MX); for a domain without MX
    records (`implicit`), the domain itself at preference 1 (as KumoMTA gives it)."""

    domain: str
    records: tuple[tuple[int, str], ...]
    implicit: bool


_Key = tuple[dns.name.Name, dns.rdatatype.RdataType]


@dataclass(slots=True)
class _Entry:
    expires: float
    outcome: Outcome


def _ip_literal(text: str) -> str | None:
    """The address of `1.2.3.4`, `[1.2.3.4]`, `::1`, `[IPv6:::1]`; None for a host name."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


def _display(name: str) -> str:
    return name.strip().rstrip(".").lower()


class MxResolver:
    """Lookups with a TTL cache, for one process.

    `nameservers`: `"ip"` / `"ip:port"` strings; None reads the system configuration
    (`/etc/resolv.conf`). `timeout`: seconds for a whole lookup (all retries and servers).
    `upstream`: where answers come from instead of those name servers (`mx.zones`,
    `mx.upstream.AggregateUpstream`). `clock`: monotonic seconds, for the cache. `rng`:
    shuffles hosts of equal preference.
    """

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        negative_ttl: float = DEFAULT_NEGATIVE_TTL,
        cache_size: int = DEFAULT_CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        upstream: Upstream | None = None,
    ) -> None:
        self.upstream = (
            upstream
            if upstream is not None
            else NetworkUpstream(nameservers, timeout, negative_ttl)
        )
        self.timeout = timeout
        self.negative_ttl = negative_ttl
        self.cache_size = max(1, cache_size)
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._cache: OrderedDict[_Key, _Entry] = OrderedDict()
        # one query per name and type in flight on each event loop (a policy loading runs
        # its lookups on an event loop of its own)
        self._inflight: dict[tuple[asyncio.AbstractEventLoop, _Key], asyncio.Future[Outcome]] = {}

    # --- delivery -----------------------------------------------------------------------

    async def resolve(self, domain: str) -> MxAnswer:
        """The mail exchangers of `domain`, in the order to try them.

        Raises `NullMx` for a null MX, `DnsTemporaryFailure` for NXDOMAIN or a DNS failure.
        """
        shown = _display(domain)
        literal = _ip_literal(domain.strip())
        if literal is not None:
            return MxAnswer(shown, (literal,), (0,), implicit=True)
        name = self._name(domain, shown, "MX")
        records = self._records(shown, "MX", await self._lookup(name, dns.rdatatype.MX))
        if not records:  # NODATA: the domain is its own mail exchanger (RFC 5321 5.1)
            return MxAnswer(shown, (name.to_text(omit_final_dot=True).lower(),), (0,), True)
        if any(host == NULL_HOST for _, host in records):
            raise NullMx(shown)
        best: dict[str, int] = {}  # a host listed twice is tried at its best preference
        for preference, host in records:
            best.setdefault(host, preference)
        return self._shuffled(shown, tuple((p, h) for h, p in best.items()))

    async def addresses(self, host: str, strategy: str = "Ipv4AndIpv6") -> list[str]:
        """The addresses of `host` (A then AAAA, or as `strategy`, a key of STRATEGIES, says);
        an IP literal is returned as is.

        An empty list when the name exists without such records. Raises
        `DnsTemporaryFailure` (rdtype `A/AAAA`) for NXDOMAIN or a DNS failure, unless one of
        the lookups gave addresses.
        """
        literal = _ip_literal(host.strip())
        if literal is not None:
            return [literal]
        shown = _display(host)
        name = self._name(host, shown, "A/AAAA")
        families, fallback = STRATEGIES[strategy]
        if fallback:
            outcomes = [await self._lookup(name, dns.rdatatype.from_text(families[0]))]
            if isinstance(outcomes[0], Failure) or not outcomes[0]:
                outcomes.append(await self._lookup(name, dns.rdatatype.from_text(families[1])))
        else:
            kinds = [dns.rdatatype.from_text(family) for family in families]
            outcomes = list(await asyncio.gather(*(self._lookup(name, k) for k in kinds)))
        found = [a for outcome in outcomes if not isinstance(outcome, Failure) for _, a in outcome]
        if not found:
            for outcome in outcomes:
                if isinstance(outcome, Failure):
                    raise DnsTemporaryFailure(shown, outcome.reason, "A/AAAA")
        return found

    # --- kumo.dns ---------------------------------------------------------------------------

    async def exchangers(self, domain: str) -> MxRecords:
        """The MX records of `domain` as published (see MxRecords). Raises
        `DnsTemporaryFailure` for NXDOMAIN or a DNS failure (not for a null MX)."""
        shown = _display(domain)
        name = self._name(domain, shown, "MX")
        records = self._records(shown, "MX", await self._lookup(name, dns.rdatatype.MX))
        fqdn = name.to_text().lower()
        if not records:
            return MxRecords(fqdn, ((1, fqdn.rstrip(".")),), implicit=True)
        return MxRecords(fqdn, records, implicit=False)

    async def records(self, name: str, rdtype: str, *, nxdomain_ok: bool = False) -> list[str]:
        """The `rdtype` records of `name` as text (TXT strings joined, PTR names with their
        final dot, addresses); empty when the name exists without such records, and, with
        `nxdomain_ok`, when it does not exist. Raises `DnsTemporaryFailure` for a DNS failure
        and (without `nxdomain_ok`) NXDOMAIN."""
        shown = _display(name)
        qname = self._name(name, shown, rdtype)
        outcome = await self._lookup(qname, dns.rdatatype.from_text(rdtype))
        if isinstance(outcome, Failure) and outcome.nxdomain and nxdomain_ok:
            return []
        return [text for _, text in self._records(shown, rdtype, outcome)]

    def clear_cache(self) -> None:
        """Forget every cached answer and failure."""
        self._cache.clear()

    # --- internals ----------------------------------------------------------------------

    def _name(self, text: str, shown: str, rdtype: str) -> dns.name.Name:
        try:
            return dns.name.from_text(text.strip())
        except dns.exception.DNSException as exc:
            raise DnsTemporaryFailure(shown, f"invalid domain name ({exc})", rdtype) from None

    @staticmethod
    def _records(shown: str, rdtype: str, outcome: Outcome) -> Records:
        if isinstance(outcome, Failure):
            raise DnsTemporaryFailure(shown, outcome.reason, rdtype)
        return outcome

    def _shuffled(self, domain: str, records: Records) -> MxAnswer:
        hosts: list[str] = []
        preferences: list[int] = []
        start = 0
        while start < len(records):
            end = start
            while end < len(records) and records[end][0] == records[start][0]:
                end += 1
            group = [host for _, host in records[start:end]]
            self._rng.shuffle(group)
            hosts.extend(group)
            preferences.extend([records[start][0]] * len(group))
            start = end
        return MxAnswer(domain, tuple(hosts), tuple(preferences), implicit=False)

    async def _lookup(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Outcome:
        key = (name, rdtype)
        entry = self._cache.get(key)
        if entry is not None:
            if entry.expires > self._clock():
                self._cache.move_to_end(key)
                return entry.outcome
            del self._cache[key]
        flight = (asyncio.get_running_loop(), key)
        pending = self._inflight.get(flight)
        if pending is None:
            pending = asyncio.ensure_future(self._query_and_store(key))
            self._inflight[flight] = pending
            pending.add_done_callback(lambda done: self._forget_inflight(flight, done))
        # a cancelled caller must not cancel the lookup the other callers wait for
        return await asyncio.shield(pending)

    def _forget_inflight(
        self, flight: tuple[asyncio.AbstractEventLoop, _Key], done: asyncio.Future[Outcome]
    ) -> None:
        if self._inflight.get(flight) is done:
            del self._inflight[flight]

    async def _query_and_store(self, key: _Key) -> Outcome:
        outcome, ttl = await self.upstream.query(*key)
        if ttl > 0:
            self._cache[key] = _Entry(self._clock() + ttl, outcome)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return outcome


_CURRENT: dict[str, MxResolver] = {}  # "engine": the running engine's, "system": the other


def use_resolver(resolver: MxResolver) -> None:
    """Make `resolver` the current one (the engine's, when it is made)."""
    _CURRENT["engine"] = resolver


def forget_resolver(resolver: MxResolver) -> None:
    """`resolver` is no longer the current one, if it was (the engine stopped)."""
    if _CURRENT.get("engine") is resolver:
        del _CURRENT["engine"]


def current_resolver() -> MxResolver:
    """The running engine's resolver, else one of the system's configuration."""
    found = _CURRENT.get("engine")
    if found is None:
        found = _CURRENT.get("system")
        if found is None:
            found = _CURRENT["system"] = MxResolver()
    return found
