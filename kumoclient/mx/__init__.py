"""DNS for delivery and for the policy's `kumo.dns` (SPEC 2.1), on dnspython's asyncio resolver.

`resolver.MxResolver` resolves MX hosts and addresses for delivery with a TTL cache (see its
module), and answers `kumo.dns`'s lookups on the same cache; `current_resolver()` is the
running engine's. Its answers come from an `upstream`: name servers (`upstream`), zone text in
memory (`zones`, KumoMTA's Test resolver) or several in turn. `system_addresses` asks the
system resolver instead (`mx_list` names). This package is the only place that raises
resolution errors (`errors.DnsLookupError` and its subclasses, which carry data, not replies:
the replies to log are made by `core.synthesized`).
"""

from kumoclient.core.nameserver import parse_nameserver
from kumoclient.errors import DnsLookupError, DnsTemporaryFailure, NullMx
from kumoclient.mx.resolver import (
    STRATEGIES,
    MxAnswer,
    MxRecords,
    MxResolver,
    current_resolver,
    forget_resolver,
    use_resolver,
)
from kumoclient.mx.system import hosts_file_addresses, system_addresses
from kumoclient.mx.upstream import AggregateUpstream, NetworkUpstream, Upstream
from kumoclient.mx.zones import ZoneUpstream

__all__ = [
    "STRATEGIES",
    "AggregateUpstream",
    "DnsLookupError",
    "DnsTemporaryFailure",
    "MxAnswer",
    "MxRecords",
    "MxResolver",
    "NetworkUpstream",
    "NullMx",
    "Upstream",
    "ZoneUpstream",
    "current_resolver",
    "forget_resolver",
    "hosts_file_addresses",
    "parse_nameserver",
    "system_addresses",
    "use_resolver",
]
