"""What the sessions of one listener share: its configuration, replies made once, the relay
decision per client address, TLS, and its limits."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable

from kumoclient.core.networks import address_in
from kumoclient.listener.limits import PROCESS, ConnectionLimits, DataBudget, descriptor_limit
from kumoclient.records import EsmtpListenerConfig

# sender, recipients, content, peer address, SMTPUTF8 → the 250 reply
Accept = Callable[[str, list[str], bytes, str, bool], Awaitable[str]]


class Listener:
    """One `kumo.start_esmtp_listener`: what its sessions share."""

    def __init__(self, config: EsmtpListenerConfig, accept: Accept) -> None:
        self.config = config
        self.accept = accept
        self.relay = [ipaddress.ip_network(h, strict=False) for h in config.relay_hosts]
        self.tls = _tls_context(config)
        self.hostname = config.hostname or socket.getfqdn()  # once, not per session
        ident = config.banner or "kumoclient ESMTP"
        self.greeting = f"220 {self.hostname} {ident}\r\n".encode()
        self.size_limit = config.max_message_size
        # stuffed data may be a little larger than the message: past this it is dropped
        # (dot-stuffing adds at most a third: a line of ".\r\n" travels as "..\r\n")
        self.data_limit = self.size_limit * 4 // 3 + 8192
        self.relay_known: dict[str, bool] = {}  # client address -> may relay (parsed once)
        self.ehlo_reply = self._ehlo(offer_tls=False)
        self.ehlo_reply_tls = self._ehlo(offer_tls=self.tls is not None)
        self.descriptors = descriptor_limit()
        PROCESS.size(self.descriptors)
        self.limits = ConnectionLimits(
            config.max_connections, config.max_connections_per_client, self.may_relay, self.hostname
        )
        self.budget = DataBudget(config.max_data_in_memory)

    def _ehlo(self, *, offer_tls: bool) -> str:
        lines = [
            self.hostname,
            f"SIZE {self.size_limit}",
            "8BITMIME",
            "SMTPUTF8",
            "PIPELINING",
            "ENHANCEDSTATUSCODES",
            *(["STARTTLS"] if offer_tls else []),
            "HELP",
        ]
        return "\r\n".join(f"250-{line}" for line in lines[:-1]) + f"\r\n250 {lines[-1]}"

    def may_relay(self, host: str) -> bool:
        """Whether the client at `host` is one of `relay_hosts`."""
        known = self.relay_known.get(host)
        if known is None:
            if len(self.relay_known) >= 4096:  # a bound against many distinct clients
                self.relay_known.clear()
            known = self.relay_known[host] = address_in(host, self.relay)
        return known


def _tls_context(config: EsmtpListenerConfig) -> ssl.SSLContext | None:
    if not config.tls_certificate:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_certificate, config.tls_private_key)
    return context
