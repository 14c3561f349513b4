"""A small authoritative DNS server in the test's own event loop (UDP and TCP, one port).

It serves one zone given as zone-file text (names relative to `origin`; a default SOA and NS
are added when the text has no SOA), and the zones of `more` (origin → text, the same way).
Answers: the records of an existing name (following CNAMEs inside its zone); NODATA with the
SOA in authority when the name exists without that type; NXDOMAIN with the SOA when it does
not; REFUSED outside the zones. Names in `servfail` get SERVFAIL; names in `silent` get no
answer at all (client timeouts); names in `held` get their answer only after `release()`
(`held_queries` counts the queries waiting, `waiting` holds their names). Records go out in
zone order (not shuffled). Every query received is counted in `queries` and logged in `log`
as (lower-case name, type, `udp`/`tcp`).

    @pytest.fixture
    async def dns_server() -> AsyncIterator[DnsServer]:
        zone = "mx 300 MX 10 mx1.test.\\nmx1 300 A 127.0.0.1\\n"
        async with DnsServer(zone, servfail=["broken"], silent=["slow"]) as server:
            yield server

    async def test_x(dns_server: DnsServer) -> None:
        resolver = MxResolver([dns_server.address], timeout=0.5)
        ...
        assert dns_server.count("mx", "MX") == 1
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rrset
import dns.zone

DEFAULT_SOA = """\
@ 300 IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 60
@ 300 IN NS ns.{origin}
"""
UDP_MAX = 512
_TCP_BIND_ATTEMPTS = 20


class DnsServer:
    """Authoritative server for `zone_text` under `origin`, on 127.0.0.1 (OS-assigned port)."""

    def __init__(
        self,
        zone_text: str,
        origin: str = "test.",
        *,
        servfail: Iterable[str] = (),
        silent: Iterable[str] = (),
        held: Iterable[str] = (),
        more: Mapping[str, str] | None = None,
    ) -> None:
        self.origin = dns.name.from_text(origin)
        self.zone = _zone(zone_text, self.origin)
        self.zones = [self.zone] + [
            _zone(text, dns.name.from_text(name)) for name, text in (more or {}).items()
        ]
        self.servfail: set[dns.name.Name] = {self._name(n) for n in servfail}
        self.silent: set[dns.name.Name] = {self._name(n) for n in silent}
        self.held: set[dns.name.Name] = {self._name(n) for n in held}
        self.held_queries = 0
        self.waiting: set[str] = set()  # the held names asked for (lower case, final dot)
        self._released = asyncio.Event()
        self.queries = 0
        self.log: list[tuple[str, str, str]] = []
        self.port = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tcp_writers: set[asyncio.StreamWriter] = set()
        self._tcp_tasks: set[asyncio.Task[None]] = set()

    def _name(self, text: str) -> dns.name.Name:
        """`mail`, `mail.test` and `mail.test.` all mean `mail.test.` (origin `test.`); a name
        under the origin of a zone of `more` is that name."""
        name = dns.name.from_text(text.rstrip("."), dns.name.root)
        if any(name.is_subdomain(zone.origin) for zone in getattr(self, "zones", [self.zone])):
            return name
        return name.relativize(dns.name.root).concatenate(self.origin)

    def release(self) -> None:
        """Send the answers of the `held` names (those waiting and those to come)."""
        self._released.set()

    async def answer_when_released(
        self, query: dns.message.Message, transport: str
    ) -> dns.message.Message | None:
        """`respond`, after `release()` for a held name."""
        question = query.question[0] if len(query.question) == 1 else None
        if question is not None and question.name in self.held and not self._released.is_set():
            self.held_queries += 1
            self.waiting.add(question.name.to_text().lower())
            await self._released.wait()
        return self.respond(query, transport)

    @property
    def address(self) -> str:
        """`127.0.0.1:port`, as `MxResolver(nameservers=[...])` takes it."""
        return f"127.0.0.1:{self.port}"

    def count(self, name: str, rdtype: str | None = None) -> int:
        """Queries received for `name` (relative to the origin or not), of `rdtype` if given."""
        wanted = self._name(name).to_text().lower()
        return sum(1 for n, t, _ in self.log if n == wanted and rdtype in (None, t))

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(_TCP_BIND_ATTEMPTS):
            transport, _protocol = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=("127.0.0.1", 0)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, "127.0.0.1", port)
            except OSError:  # the TCP port is taken: try another UDP port
                transport.close()
                continue
            self._udp = transport
            self.port = port
            return
        raise OSError("no port free for both UDP and TCP")

    async def stop(self) -> None:
        self.release()  # held answers go out (or are dropped) rather than stay pending
        await asyncio.sleep(0)
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._tcp_writers):
                writer.close()
            if self._tcp_tasks:
                await asyncio.gather(*self._tcp_tasks, return_exceptions=True)
            await self._tcp.wait_closed()
            self._tcp = None
        await asyncio.sleep(0)  # let the closed transports release their sockets

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- transports ---------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tcp_tasks.add(task)
        self._tcp_writers.add(writer)
        try:
            while True:
                length = int.from_bytes(await reader.readexactly(2), "big")
                wire = await reader.readexactly(length)
                query = _parse(wire)
                if query is None:
                    break
                response = await self.answer_when_released(query, "tcp")
                if response is not None:
                    writer.write(response.to_wire(prepend_length=True, want_shuffle=False))
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._tcp_writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._tcp_tasks.discard(task)

    # --- answers ------------------------------------------------------------------------

    def respond(self, query: dns.message.Message, transport: str) -> dns.message.Message | None:
        """The response to `query`, or None to stay silent."""
        if len(query.question) != 1:
            response = dns.message.make_response(query)
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        qname, rdtype = question.name, question.rdtype
        self.queries += 1
        self.log.append((qname.to_text().lower(), dns.rdatatype.to_text(rdtype), transport))
        if qname in self.silent:
            return None
        response = dns.message.make_response(query)
        if qname in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        zone = self._zone_of(qname)
        if zone is None:
            response.set_rcode(dns.rcode.REFUSED)
            return response
        response.flags |= dns.flags.AA
        name = qname
        for _ in range(8):  # follow CNAMEs inside the zone
            inside = zone.origin is not None and name.is_subdomain(zone.origin)
            node = zone.get_node(name) if inside else None
            if node is None:  # NXDOMAIN, or NODATA for an empty non-terminal
                if inside:
                    if not any(other.is_subdomain(name) for other in zone.nodes):
                        response.set_rcode(dns.rcode.NXDOMAIN)
                    self._add_soa(response, zone)
                return response
            rdataset = node.get_rdataset(dns.rdataclass.IN, rdtype)
            if rdataset is not None:
                response.answer.append(
                    dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))
                )
                return response
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None:
                self._add_soa(response, zone)  # NODATA
                return response
            response.answer.append(dns.rrset.from_rdata_list(name, cname.ttl, list(cname)))
            target = cname[0]
            assert isinstance(target, dns.rdtypes.ANY.CNAME.CNAME)
            name = target.target
        return response

    def _zone_of(self, name: dns.name.Name) -> dns.zone.Zone | None:
        inside = [z for z in self.zones if z.origin is not None and name.is_subdomain(z.origin)]
        return max(inside, key=lambda z: len(z.origin or ()), default=None)

    def _add_soa(self, response: dns.message.Message, zone: dns.zone.Zone) -> None:
        assert zone.origin is not None
        soa = zone.get_rrset(zone.origin, dns.rdatatype.SOA)
        if soa is not None:
            response.authority.append(soa)


def _zone(text: str, origin: dns.name.Name) -> dns.zone.Zone:
    if " SOA " not in text.upper().replace("\t", " "):
        text = DEFAULT_SOA.format(origin=origin.to_text()) + text
    return dns.zone.from_text(text, origin=origin, relativize=False)


def _parse(wire: bytes) -> dns.message.Message | None:
    try:
        message = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    if message.flags & dns.flags.QR:
        return None
    return message


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.later: set[asyncio.Task[None]] = set()  # held answers

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, int]) -> None:
        query = _parse(data)
        if query is None or self.transport is None:
            return
        if len(query.question) == 1 and query.question[0].name in self.server.held:
            task = asyncio.ensure_future(self._answer_later(query, addr))
            self.later.add(task)
            task.add_done_callback(self.later.discard)
            return
        self._send(query, self.server.respond(query, "udp"), addr)

    async def _answer_later(self, query: dns.message.Message, addr: tuple[str | int, int]) -> None:
        self._send(query, await self.server.answer_when_released(query, "udp"), addr)

    def _send(
        self,
        query: dns.message.Message,
        response: dns.message.Message | None,
        addr: tuple[str | int, int],
    ) -> None:
        if response is None or self.transport is None or self.transport.is_closing():
            return
        max_size = max(UDP_MAX, query.payload) if query.edns >= 0 else UDP_MAX
        wire = response.to_wire(max_size=max_size, prefer_truncation=True, want_shuffle=False)
        self.transport.sendto(wire, addr)
