"""The public face of one outbound SMTP connection: open it, send messages over it, close it."""

from __future__ import annotations

from kumoclient import logs
from kumoclient.configs import EgressPathConfig
from kumoclient.core.reply import SPACE, single_line
from kumoclient.smtp.channel import Channel
from kumoclient.smtp.opening import open_channel
from kumoclient.smtp.transaction import transact
from kumoclient.smtp.values import Exchange, Target, Transcript

log = logs.get_logger(__name__)


class Session:
    """An open, greeted SMTP connection to one target (`open`), reused for many messages."""

    def __init__(self, channel: Channel, config: EgressPathConfig) -> None:
        self._channel = channel
        self.target = channel.target
        self.config = config
        self.transcript = channel.transcript
        self.deliveries = 0

    @classmethod
    async def open(
        cls,
        target: Target,
        config: EgressPathConfig,
        ehlo_domain: str,
        transcript: Transcript | None = None,
    ) -> Session:
        """Connect, read the greeting, EHLO and STARTTLS; raises ConnectFailure."""
        return cls(await open_channel(target, config, ehlo_domain, transcript), config)

    @property
    def tls(self) -> tuple[str, str] | None:
        """(TLS version, cipher) when the session went through STARTTLS."""
        return self._channel.tls

    @property
    def broken(self) -> bool:
        """True once the connection was dropped (it is never used again)."""
        return self._channel.broken

    @property
    def usable(self) -> bool:
        """False once the connection broke, the server closed it while idle, or the server
        said something while no command was outstanding."""
        return self._channel.usable

    async def send(self, sender: str, recipient: str, content: bytes) -> Exchange:
        """One transaction (`transaction.transact`). Never raises for anything the server or
        the network does."""
        self.deliveries += 1
        return await transact(self._channel, self.config, sender, recipient, content)

    def abort(self) -> None:
        """Drop the connection without QUIT."""
        self._discard()
        self._channel.abort()

    async def close(self) -> None:
        """QUIT (briefly waited for) and close."""
        self._discard()
        await self._channel.quit(self.config.rset_timeout)

    def _discard(self) -> None:
        stray = None if self._channel.broken else self._channel.out_of_turn()
        if stray is not None:  # a reply came while the connection was idle
            after, reply = stray
            log.info(
                "server replied with no command outstanding; connection discarded",
                target=self.target.where,
                after=after,
                reply=single_line(reply, SPACE),
            )
