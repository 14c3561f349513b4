"""Answers from zone text held in memory (KumoMTA's `Test` resolver): each zone is zone-file
text with its `$ORIGIN`; a name is answered by the zone of its nearest enclosing origin.

A name under no zone does not exist (NXDOMAIN). Inside a zone, a name with records of the
type asked has them; one with a CNAME is followed (inside the zones); any other name has no
records of that type (NODATA, never NXDOMAIN: as KumoMTA's test resolver). A name listed in
`servfail` fails as a server failure would.
"""

from __future__ import annotations

from collections.abc import Sequence

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone

from kumoclient.mx.upstream import NXDOMAIN, Failure, Outcome, records_of

NEGATIVE_TTL = 60.0  # seconds a "no such name" / "no such records" answer is kept
_MAX_ALIASES = 8


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text.strip().rstrip(".") + ".").canonicalize()


class ZoneUpstream:
    """Answers from `zones` (zone-file texts), failing for the names in `servfail`.

    Raises ValueError when a zone cannot be read (the message names the zone by position).
    """

    def __init__(self, zones: Sequence[str], servfail: Sequence[str] = ()) -> None:
        self.zones: dict[dns.name.Name, dns.zone.Zone] = {}
        for index, text in enumerate(zones, start=1):
            try:
                zone = dns.zone.from_text(text, origin=None, relativize=False, check_origin=False)
            except dns.zone.UnknownOrigin:
                raise ValueError(f"zone {index}: the zone text has no $ORIGIN") from None
            except dns.exception.DNSException as exc:
                raise ValueError(f"zone {index}: {exc}") from None
            assert zone.origin is not None  # from_text without an origin fails above
            self.zones[zone.origin.canonicalize()] = zone
        try:
            self.servfail = {_name(name) for name in servfail}
        except dns.exception.DNSException as exc:
            raise ValueError(f"servfail: {exc}") from None

    def _zone_of(self, name: dns.name.Name) -> dns.zone.Zone | None:
        candidate = name
        while True:
            zone = self.zones.get(candidate)
            if zone is not None or candidate == dns.name.root:
                return zone
            candidate = candidate.parent()

    async def query(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> tuple[Outcome, float]:
        name = name.canonicalize()
        for _ in range(_MAX_ALIASES):
            if name in self.servfail:
                return Failure("SERVFAIL from the test zones"), NEGATIVE_TTL
            zone = self._zone_of(name)
            if zone is None:
                return Failure(NXDOMAIN), NEGATIVE_TTL
            node = zone.get_node(name)
            if node is None:
                return (), NEGATIVE_TTL
            rdataset = node.get_rdataset(dns.rdataclass.IN, rdtype)
            if rdataset is not None:
                return records_of(rdtype, rdataset), float(rdataset.ttl)
            alias = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if alias is None or rdtype == dns.rdatatype.CNAME:
                return (), NEGATIVE_TTL
            name = _name(alias[0].to_text())
        return Failure("CNAME chain too long in the test zones"), NEGATIVE_TTL
