"""What the sessions of one listener share: its configuration and the keys of a connection
(`Keys`: replies made once, the relay decision per client address, the TLS context), the
policy's answers, the clients' failed authentications, and its limits."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time

from kumoclient import logs
from kumoclient.configs import EsmtpListenerConfig
from kumoclient.core.listener_params import is_plain
from kumoclient.core.networks import Network, address_in
from kumoclient.core.smtp_server import format_reply
from kumoclient.listener.connection import Accept, NoEvents, ServerEvents
from kumoclient.listener.limits import PROCESS, ConnectionLimits, DataBudget, descriptor_limit

log = logs.get_logger(__name__)

AUTH_EXTENSION = "AUTH PLAIN LOGIN"
_FAILURES_KEPT = 4096  # client addresses whose failed authentications are remembered
_FAILURES_FORGOTTEN = 900.0  # seconds after its last failure that a client starts afresh


class Keys:
    """The listener keys in force for a connection, and what is made of them once: the
    greeting, the EHLO extensions, the size and line limits, the relay networks."""

    __slots__ = (
        "config",
        "data_limit",
        "ehlo_replies",
        "extensions",
        "greeting",
        "hostname",
        "line_limit",
        "relay",
        "size_limit",
    )

    def __init__(self, config: EsmtpListenerConfig, default_hostname: str) -> None:
        self.config = config
        self.hostname = config.hostname or default_hostname
        self.greeting = f"220 {self.hostname} {config.banner or 'kumoclient ESMTP'}"
        self.size_limit = config.max_message_size
        # stuffed data may be a little larger than the message: past this it is dropped
        # (dot-stuffing adds at most a third: a line of ".\r\n" travels as "..\r\n")
        self.data_limit = self.size_limit * 4 // 3 + 8192
        self.line_limit = config.line_length_hard_limit + 2  # with its CRLF
        self.relay: list[Network] = [
            ipaddress.ip_network(host, strict=False) for host in config.relay_hosts
        ]
        self.extensions: dict[tuple[bool, bool], list[str]] = {}
        self.ehlo_replies: dict[tuple[bool, bool], str] = {}

    def ehlo_extensions(self, *, offer_tls: bool, offer_auth: bool) -> list[str]:
        """What EHLO advertises (a copy the policy may change)."""
        found = self.extensions.get((offer_tls, offer_auth))
        if found is None:
            found = self.extensions[(offer_tls, offer_auth)] = [
                f"SIZE {self.size_limit}",
                "8BITMIME",
                "SMTPUTF8",
                "PIPELINING",
                "ENHANCEDSTATUSCODES",
                *(["STARTTLS"] if offer_tls else []),
                *([AUTH_EXTENSION] if offer_auth else []),
                "HELP",
            ]
        return list(found)

    def ehlo_reply(self, extensions: list[str]) -> str:
        """The EHLO reply advertising `extensions`."""
        return format_reply(250, "\n".join([self.hostname, *extensions]))

    def default_ehlo(self, *, offer_tls: bool, offer_auth: bool) -> str:
        """The EHLO reply advertising what the listener offers (made once)."""
        found = self.ehlo_replies.get((offer_tls, offer_auth))
        if found is None:
            offered = self.ehlo_extensions(offer_tls=offer_tls, offer_auth=offer_auth)
            found = self.ehlo_replies[(offer_tls, offer_auth)] = self.ehlo_reply(offered)
        return found


class Listener:
    """One `kumo.start_esmtp_listener`: what its sessions share."""

    def __init__(
        self, config: EsmtpListenerConfig, accept: Accept, events: ServerEvents | None = None
    ) -> None:
        self.config = config
        self.accept = accept
        self.events: ServerEvents = events if events is not None else NoEvents()
        self.default_hostname = socket.getfqdn()  # once, not per session
        self.base = Keys(config, self.default_hostname)
        self.hostname = self.base.hostname
        self.plain = is_plain(config)  # every session has the listener's keys as they are
        self.contexts: dict[tuple[str, str | None, str | None], ssl.SSLContext] = {}
        self.tls = self.tls_context(config)  # (a bad certificate fails the start)
        self.relay_known: dict[str, bool] = {}  # client address -> may relay (parsed once)
        self.failures: dict[str, tuple[int, float]] = {}  # client -> failed AUTHs, last one
        self.descriptors = descriptor_limit()
        PROCESS.size(self.descriptors)
        self.limits = ConnectionLimits(
            config.max_connections, config.max_connections_per_client, self.may_relay, self.hostname
        )
        self.budget = DataBudget(config.max_data_in_memory)

    def may_relay(self, host: str, keys: Keys | None = None) -> bool:
        """Whether the client at `host` is one of `relay_hosts` (the listener's, or those of
        `keys` when a connection has its own)."""
        if keys is not None and keys is not self.base:
            return address_in(host, keys.relay)
        known = self.relay_known.get(host)
        if known is None:
            if len(self.relay_known) >= 4096:  # a bound against many distinct clients
                self.relay_known.clear()
            known = self.relay_known[host] = address_in(host, self.base.relay)
        return known

    def tls_context(self, config: EsmtpListenerConfig) -> ssl.SSLContext | None:
        """The server TLS context of `config`'s certificate (None without one), made once;
        OSError / ssl.SSLError when the files cannot be used."""
        if not config.tls_certificate:
            return None
        key = (config.tls_certificate, config.tls_private_key, config.tls_required_client_ca)
        context = self.contexts.get(key)
        if context is None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(config.tls_certificate, config.tls_private_key)
            if config.tls_required_client_ca:
                context.load_verify_locations(config.tls_required_client_ca)
                context.verify_mode = ssl.CERT_OPTIONAL
            self.contexts[key] = context
        return context

    def failed_auth(self, host: str) -> int:
        """Count a failed authentication of the client at `host`: its failures so far."""
        now = time.monotonic()
        count, last = self.failures.get(host, (0, now))
        if now - last > _FAILURES_FORGOTTEN:
            count = 0
        if len(self.failures) >= _FAILURES_KEPT and host not in self.failures:
            self.failures.clear()
        self.failures[host] = (count + 1, now)
        return count + 1

    def authenticated(self, host: str) -> None:
        """The client at `host` authenticated: its failures are forgotten."""
        self.failures.pop(host, None)
