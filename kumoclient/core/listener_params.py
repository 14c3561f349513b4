"""The keys of one SMTP connection: a listener's, changed by its `peer` and `via` blocks and
by what `smtp_server_get_dynamic_parameters` returns, with the connection metadata they set.

Rules (KumoMTA's order):
- start from the listener's keys (`kumo.start_esmtp_listener`) and its `meta`;
- an overlay sets the keys it names (others stay), merges its `meta` into the connection's
  (a key is replaced, never removed), and `hostname` sets the `hostname` metadata too; then
  the `peer` block whose CIDR holds the client's address applies, then the `via` block whose
  CIDR holds the listener's own address (the most specific CIDR of each map, recursively);
- `smtp_server_get_dynamic_parameters`' answer is one more overlay, applied last.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import fields, replace
from typing import Any

from kumoclient.configs import EsmtpListenerConfig, ListenerOverrides
from kumoclient.core.networks import Network

# the keys an overlay may set (all of ListenerOverrides but its maps)
_KEYS = tuple(f.name for f in fields(ListenerOverrides) if f.name not in ("meta", "peer", "via"))


@functools.lru_cache(maxsize=1024)
def network(cidr: str) -> Network:
    """A CIDR (or a bare address) as a network; ValueError when it is neither."""
    return ipaddress.ip_network(cidr, strict=False)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


def best_match(
    blocks: tuple[tuple[str, ListenerOverrides], ...], address: str
) -> ListenerOverrides | None:
    """The block whose CIDR holds `address` with the longest prefix, or None."""
    ip = _address(address)
    if ip is None:
        return None
    found: ListenerOverrides | None = None
    longest = -1
    for cidr, block in blocks:
        net = network(cidr)
        if ip.version == net.version and ip in net and net.prefixlen > longest:
            found, longest = block, net.prefixlen
    return found


def base_overlay(config: EsmtpListenerConfig) -> ListenerOverrides:
    """The listener's own `meta`, `peer` and `via`, as the first overlay."""
    return ListenerOverrides(meta=config.meta, peer=config.peer, via=config.via)


def apply(
    params: EsmtpListenerConfig,
    overlay: ListenerOverrides,
    *,
    local: str,
    peer: str,
    meta: dict[str, Any],
) -> EsmtpListenerConfig:
    """`params` with `overlay` applied for a connection from `peer` to `local` (addresses,
    no ports); `meta` (the connection's metadata) gets the overlay's `meta` and `hostname`."""
    changes = {key: value for key in _KEYS if (value := getattr(overlay, key)) is not None}
    if changes:
        params = replace(params, **changes)
    for key, value in overlay.meta:
        meta[key] = value
    if overlay.hostname is not None:
        meta["hostname"] = overlay.hostname
    for blocks, address in ((overlay.peer, peer), (overlay.via, local)):
        block = best_match(blocks, address) if blocks else None
        if block is not None:
            params = apply(params, block, local=local, peer=peer, meta=meta)
    return params


def is_plain(config: EsmtpListenerConfig) -> bool:
    """True when every connection of the listener has its keys as they are (no `peer`, `via`
    or `meta`): the sessions share one set of keys."""
    return not (config.peer or config.via or config.meta)
