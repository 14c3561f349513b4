"""Opening a connection to one target: TCP connect, the 220 greeting, EHLO (HELO when EHLO is
refused as unknown), STARTTLS per `enable_tls` (SPEC 2.1, 5.2). Every failure is a
ConnectFailure naming its phase: the engine then tries the next host, and these never reach
the rewrite hook.

| enable_tls            | STARTTLS offered                     | not offered |
|-----------------------|--------------------------------------|-------------|
| Disabled              | not used                             | clear text  |
| Opportunistic         | verified; a failure fails the target | clear text  |
| OpportunisticInsecure | unverified; a failure: reconnect and | clear text  |
|                       | go on in clear text                  |             |
| Required              | verified; a failure fails the target | fails       |
| RequiredInsecure      | unverified; a failure fails it       | fails       |
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl

from kumoclient.configs import EgressPathConfig, TlsMode
from kumoclient.errors import ConnectFailure
from kumoclient.smtp.channel import Channel, TransportError
from kumoclient.smtp.values import Target, Transcript


async def open_channel(
    target: Target, config: EgressPathConfig, ehlo_domain: str, transcript: Transcript | None
) -> Channel:
    """A greeted connection, after STARTTLS when the mode asks for it; ConnectFailure."""
    mode = config.enable_tls
    channel = await _greeted(target, config, ehlo_domain, transcript)
    if mode is TlsMode.DISABLED:
        return channel
    if not channel.supports("starttls"):
        if mode in (TlsMode.REQUIRED, TlsMode.REQUIRED_INSECURE):
            await channel.quit(config.rset_timeout)
            raise ConnectFailure(target.where, "starttls", "STARTTLS is not advertised")
        return channel
    verify = mode in (TlsMode.OPPORTUNISTIC, TlsMode.REQUIRED)
    try:
        await channel.starttls(target.name, tls_context(verify), config.starttls_timeout)
        await _hello(channel, ehlo_domain, config.ehlo_timeout)
    except ConnectFailure:
        channel.abort()
        if mode is not TlsMode.OPPORTUNISTIC_INSECURE:
            raise
        # OpportunisticInsecure: the handshake failed, carry on in clear text
        return await _greeted(target, config, ehlo_domain, transcript)
    return channel


async def _greeted(
    target: Target, config: EgressPathConfig, ehlo_domain: str, transcript: Transcript | None
) -> Channel:
    sock = await tcp_connect(target, config.connect_timeout, config.source_address)
    channel = await Channel.greet(sock, target, ehlo_domain, config.banner_timeout, transcript)
    await _hello(channel, ehlo_domain, config.ehlo_timeout)
    return channel


async def _hello(channel: Channel, ehlo_domain: str, timeout: float) -> None:
    """EHLO, or HELO for a server that does not know EHLO (a 50x); ConnectFailure."""
    where = channel.target.where
    phase = "ehlo"
    try:
        code, text = await channel.hello("EHLO", ehlo_domain, timeout)
        if code == 250:
            return
        if 500 <= code < 510:  # EHLO not understood: an old server, try HELO
            phase = "helo"
            code, text = await channel.hello("HELO", ehlo_domain, timeout)
            if code == 250:
                return
    except TransportError as exc:
        channel.abort()
        raise ConnectFailure(where, exc.phase, exc.describe()) from exc
    channel.abort()
    raise ConnectFailure(where, phase, f"{code} {text}")


@functools.lru_cache(maxsize=2)
def tls_context(verify: bool) -> ssl.SSLContext:
    """One context per mode for the process: loading the CA store costs milliseconds."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def tcp_connect(
    target: Target, timeout: float, source_address: str | None = None
) -> socket.socket:
    """A connected, non-blocking socket to the target (from `source_address` when given);
    ConnectFailure on error or timeout."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        if source_address is not None:
            sock.bind((source_address, 0))
        await asyncio.wait_for(loop.sock_connect(sock, (target.address, target.port)), timeout)
    except TimeoutError as exc:
        sock.close()
        raise ConnectFailure(target.where, "connect", f"timed out after {timeout:g}s") from exc
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConnectFailure(target.where, "connect", reason) from exc
    except BaseException:
        sock.close()
        raise
    return sock
