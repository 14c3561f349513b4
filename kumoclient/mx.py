"""MX and address resolution for delivery (SPEC 2.1), on dnspython's asyncio resolver.

`MxResolver.resolve(domain)` gives the hosts to try in order: MX records by ascending
preference, shuffled within a preference. A domain without MX records (NODATA) is its own
implicit MX. A null MX (RFC 7505) raises `NullMx` (a Bounce `556 5.1.10`); NXDOMAIN and every
DNS failure raise `DnsTemporaryFailure` (a TransientFailure `451 4.4.4`, never a bounce).
`MxResolver.addresses(host)` gives a host's A then AAAA addresses; `system_addresses` asks
the system resolver instead (`mx_list` names). This is the only module that raises resolution
errors (`errors.DnsLookupError` and its subclasses, which carry data, not replies: the replies
to log are made by `core.synthesized`).

Answers are cached for their TTL (the smallest TTL of the answer, CNAMEs included; for NODATA
the SOA's negative TTL); failures for `negative_ttl` seconds. The cache is an LRU bounded by
`cache_size` entries, and concurrent lookups of the same name share one query.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.resolver

from kumoclient.core.nameserver import parse_nameserver
from kumoclient.errors import DnsLookupError, DnsTemporaryFailure, NullMx

__all__ = [
    "DnsLookupError",
    "DnsTemporaryFailure",
    "MxAnswer",
    "MxResolver",
    "NullMx",
    "parse_nameserver",
    "system_addresses",
]

DEFAULT_TIMEOUT = 5.0
DEFAULT_NEGATIVE_TTL = 30.0
DEFAULT_CACHE_SIZE = 10_000


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
class _Failure:
    reason: str


# (preference, host) for MX, (0, address) for A/AAAA; empty for NODATA
_Records = tuple[tuple[int, str], ...]
_Outcome = _Records | _Failure
_Key = tuple[dns.name.Name, dns.rdatatype.RdataType]


@dataclass(slots=True)
class _Entry:
    expires: float
    outcome: _Outcome


_NULL_HOST = "."


def _ip_literal(text: str) -> str | None:
    """The address of `1.2.3.4`, `[1.2.3.4]`, `::1`, `[IPv6:::1]`; None for a host name."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if inner[:5].lower() == "ipv6:":
        inner = inner[5:]
    try:
        return str(ipaddress.ip_address(inner))
    except ValueError:
        return None


def _server_text(server: str | None, port: int) -> str:
    """`127.0.0.1:53` / `[::1]:53` from dnspython's `Do53:127.0.0.1@53` and answer port."""
    text = str(server)
    kind, sep, rest = text.partition(":")
    if sep and kind.isalnum() and "@" in rest:  # Do53:address@port
        text = rest.rpartition("@")[0]
    if _ip_literal(text) is None:
        return text  # a DoH URL or anything else: as dnspython names it
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


def _display(name: str) -> str:
    return name.strip().rstrip(".").lower()


class MxResolver:
    """MX and A/AAAA lookups with a TTL cache, for one process (one event loop).

    `nameservers`: `"ip"` / `"ip:port"` strings; None reads the system configuration
    (`/etc/resolv.conf`). `timeout`: seconds for a whole lookup (all retries and servers).
    `clock`: monotonic seconds, for the cache. `rng`: shuffles hosts of equal preference.
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
    ) -> None:
        if nameservers is None:
            try:
                self._resolver = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                # no usable /etc/resolv.conf: every lookup fails, transiently
                self._resolver = dns.asyncresolver.Resolver(configure=False)
        else:
            self._resolver = dns.asyncresolver.Resolver(configure=False)
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(*parse_nameserver(ns)) for ns in nameservers
            ]
        self._resolver.lifetime = timeout
        self._resolver.cache = None  # ours, below, runs on `clock`
        self.timeout = timeout
        self.negative_ttl = negative_ttl
        self.cache_size = max(1, cache_size)
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._cache: OrderedDict[_Key, _Entry] = OrderedDict()
        self._inflight: dict[_Key, asyncio.Future[_Outcome]] = {}

    # --- public API ---------------------------------------------------------------------

    async def resolve(self, domain: str) -> MxAnswer:
        """The mail exchangers of `domain`, in the order to try them.

        Raises `NullMx` for a null MX, `DnsTemporaryFailure` for NXDOMAIN or a DNS failure.
        """
        shown = _display(domain)
        literal = _ip_literal(domain.strip())
        if literal is not None:
            return MxAnswer(shown, (literal,), (0,), implicit=True)
        name = self._name(domain, shown, "MX")
        outcome = await self._lookup(name, dns.rdatatype.MX)
        if isinstance(outcome, _Failure):
            raise DnsTemporaryFailure(shown, outcome.reason, "MX")
        if not outcome:  # NODATA: the domain is its own mail exchanger (RFC 5321 5.1)
            return MxAnswer(shown, (name.to_text(omit_final_dot=True).lower(),), (0,), True)
        if any(host == _NULL_HOST for _, host in outcome):
            raise NullMx(shown)
        return self._shuffled(shown, outcome)

    async def addresses(self, host: str) -> list[str]:
        """The A then AAAA addresses of `host`; an IP literal is returned as is.

        An empty list when the name exists with neither record type. Raises
        `DnsTemporaryFailure` (rdtype `A/AAAA`) for NXDOMAIN or a DNS failure, unless one of
        the two lookups gave addresses.
        """
        literal = _ip_literal(host.strip())
        if literal is not None:
            return [literal]
        shown = _display(host)
        name = self._name(host, shown, "A/AAAA")
        v4, v6 = await asyncio.gather(
            self._lookup(name, dns.rdatatype.A), self._lookup(name, dns.rdatatype.AAAA)
        )
        found = [a for outcome in (v4, v6) if not isinstance(outcome, _Failure) for _, a in outcome]
        if not found:
            for outcome in (v4, v6):
                if isinstance(outcome, _Failure):
                    raise DnsTemporaryFailure(shown, outcome.reason, "A/AAAA")
        return found

    def clear_cache(self) -> None:
        """Forget every cached answer and failure."""
        self._cache.clear()

    # --- internals ----------------------------------------------------------------------

    def _name(self, text: str, shown: str, rdtype: str) -> dns.name.Name:
        try:
            return dns.name.from_text(text.strip())
        except dns.exception.DNSException as exc:
            raise DnsTemporaryFailure(shown, f"invalid domain name ({exc})", rdtype) from None

    def _shuffled(self, domain: str, records: _Records) -> MxAnswer:
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

    async def _lookup(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> _Outcome:
        key = (name, rdtype)
        entry = self._cache.get(key)
        if entry is not None:
            if entry.expires > self._clock():
                self._cache.move_to_end(key)
                return entry.outcome
            del self._cache[key]
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._query_and_store(key))
            self._inflight[key] = pending
            pending.add_done_callback(lambda done: self._forget_inflight(key, done))
        # a cancelled caller must not cancel the lookup the other callers wait for
        return await asyncio.shield(pending)

    def _forget_inflight(self, key: _Key, done: asyncio.Future[_Outcome]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]

    async def _query_and_store(self, key: _Key) -> _Outcome:
        outcome, ttl = await self._query(*key)
        if ttl > 0:
            self._cache[key] = _Entry(self._clock() + ttl, outcome)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return outcome

    async def _query(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> tuple[_Outcome, float]:
        try:
            answer = await self._resolver.resolve(
                name, rdtype, raise_on_no_answer=False, search=False
            )
        except dns.exception.DNSException as exc:
            return _Failure(self._reason(exc)), self.negative_ttl
        ttl = float(answer.chaining_result.minimum_ttl)
        if answer.rrset is None:
            return (), ttl
        records: list[tuple[int, str]] = []
        if rdtype == dns.rdatatype.MX:
            for rdata in answer.rrset:
                mx = cast(dns.rdtypes.ANY.MX.MX, rdata)
                host = (
                    _NULL_HOST
                    if mx.exchange == dns.name.root
                    else mx.exchange.to_text(omit_final_dot=True).lower()
                )
                records.append((mx.preference, host))
            records.sort()
            first: dict[str, int] = {}  # a host listed twice is tried at its best preference
            for preference, host in records:
                first.setdefault(host, preference)
            records = [(preference, host) for host, preference in first.items()]
        else:
            for rdata in answer.rrset:
                address = cast(dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA, rdata).address
                records.append((0, address))
        return tuple(records), ttl

    def _reason(self, exc: dns.exception.DNSException) -> str:
        if isinstance(exc, dns.resolver.NXDOMAIN):
            return "NXDOMAIN"
        if isinstance(exc, dns.resolver.YXDOMAIN):
            return "YXDOMAIN"
        if isinstance(exc, dns.exception.Timeout):
            return f"timed out after {self.timeout:g} s"
        if isinstance(exc, dns.resolver.NoNameservers):
            errors = exc.kwargs.get("errors") or []
            if not errors:
                return "no nameservers configured"
            parts = []
            for server, _tcp, port, error, _response in errors:
                what = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
                parts.append(f"{what} from {_server_text(server, port)}")
            return "; ".join(dict.fromkeys(parts))
        return f"{type(exc).__name__}: {exc}"


async def system_addresses(name: str, port: int, timeout: float) -> list[str]:
    """The addresses of a host name through the system resolver (so /etc/hosts works for the
    `mx_list` names of local setups), IPv4 first. Raises DnsTemporaryFailure."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP),
            timeout,
        )
    except TimeoutError:
        raise DnsTemporaryFailure(name, "timed out", "address") from None
    except OSError as exc:
        raise DnsTemporaryFailure(name, exc.strerror or str(exc), "address") from None
    addresses: list[str] = []
    for family, *_, sockaddr in sorted(infos, key=lambda info: info[0] != socket.AF_INET):
        address = str(sockaddr[0])
        if family in (socket.AF_INET, socket.AF_INET6) and address not in addresses:
            addresses.append(address)
    return addresses
