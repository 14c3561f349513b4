"""Where DNS answers come from: name servers over the network (dnspython's asyncio resolver),
zone text held in memory (`mx.zones`), or several of these asked in turn.

An upstream answers `query(name, rdtype)` with the records and how long they may be cached,
or a `Failure` — data, never an exception: `mx.resolver` decides what a failure means.
Records are `(preference, text)` pairs: an MX record's preference and exchange (lower case,
no final dot; `.` for a null MX), else 0 and the address (A, AAAA), the text (TXT, its
strings joined) or the name with its final dot (PTR, CNAME).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.TXT
import dns.resolver

from kumoclient.core.nameserver import parse_nameserver

NULL_HOST = "."
NXDOMAIN = "NXDOMAIN"

Records = tuple[tuple[int, str], ...]  # empty: the name exists without such records (NODATA)


@dataclass(frozen=True, slots=True)
class Failure:
    """No answer: `reason` says why (`NXDOMAIN`, `SERVFAIL from 127.0.0.1:53`, ...)."""

    reason: str

    @property
    def nxdomain(self) -> bool:
        """True when the name does not exist (rather than the lookup failing)."""
        return self.reason == NXDOMAIN


Outcome = Records | Failure


class Upstream(Protocol):
    """A source of DNS answers (see the module's text)."""

    async def query(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> tuple[Outcome, float]:
        """The outcome for (`name`, `rdtype`) and the seconds it may be cached (0: not)."""
        ...


def record_text(rdata: dns.rdata.Rdata) -> tuple[int, str]:
    """One record as a `(preference, text)` pair (see the module's text)."""
    if rdata.rdtype == dns.rdatatype.MX:
        mx = cast(dns.rdtypes.ANY.MX.MX, rdata)
        if mx.exchange == dns.name.root:
            return mx.preference, NULL_HOST
        return mx.preference, mx.exchange.to_text(omit_final_dot=True).lower()
    if rdata.rdtype == dns.rdatatype.TXT:
        strings = cast(dns.rdtypes.ANY.TXT.TXT, rdata).strings
        return 0, b"".join(strings).decode("utf-8", errors="replace")
    if rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        return 0, str(ipaddress.ip_address(rdata.to_text()))
    return 0, rdata.to_text()


def records_of(rdtype: dns.rdatatype.RdataType, rdatas: Iterable[dns.rdata.Rdata]) -> Records:
    """The records of an answer; MX records in preference order, then by name."""
    records = [record_text(rdata) for rdata in rdatas]
    return tuple(sorted(records)) if rdtype == dns.rdatatype.MX else tuple(records)


def _server_text(server: str | None, port: int) -> str:
    """`127.0.0.1:53` / `[::1]:53` from dnspython's `Do53:127.0.0.1@53` and answer port."""
    text = str(server)
    kind, sep, rest = text.partition(":")
    if sep and kind.isalnum() and "@" in rest:  # Do53:address@port
        text = rest.rpartition("@")[0]
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return text  # a DoH URL or anything else: as dnspython names it
    return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"


class NetworkUpstream:
    """Name servers over UDP (TCP when a reply is truncated): `nameservers` as `"ip"` /
    `"ip:port"` strings, None for the system's configuration (`/etc/resolv.conf`);
    `timeout`: seconds for a whole lookup (every retry and server); failures are cached for
    `negative_ttl` seconds."""

    def __init__(
        self, nameservers: Sequence[str] | None, timeout: float, negative_ttl: float
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
        self._resolver.cache = None  # the resolver's own cache runs on its clock
        self.timeout = timeout
        self.negative_ttl = negative_ttl

    async def query(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> tuple[Outcome, float]:
        try:
            answer = await self._resolver.resolve(
                name, rdtype, raise_on_no_answer=False, search=False
            )
        except dns.exception.DNSException as exc:
            return Failure(self._reason(exc)), self.negative_ttl
        ttl = float(answer.chaining_result.minimum_ttl)
        if answer.rrset is None:
            return (), ttl
        return records_of(rdtype, answer.rrset), ttl

    def _reason(self, exc: dns.exception.DNSException) -> str:
        if isinstance(exc, dns.resolver.NXDOMAIN):
            return NXDOMAIN
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


class AggregateUpstream:
    """Several upstreams asked in turn: the first that knows the name answers (its records,
    or NODATA); NXDOMAIN when none knows it; when none knows it and one failed, the last
    failure."""

    def __init__(self, upstreams: Sequence[Upstream]) -> None:
        self.upstreams = tuple(upstreams)

    async def query(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> tuple[Outcome, float]:
        outcome: tuple[Outcome, float] = (Failure(NXDOMAIN), 0.0)
        failed: tuple[Outcome, float] | None = None
        for upstream in self.upstreams:
            answer = await upstream.query(name, rdtype)
            if not isinstance(answer[0], Failure):
                return answer
            if answer[0].nxdomain:
                outcome = answer
            else:
                failed = answer
        return failed if failed is not None else outcome
