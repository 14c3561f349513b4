"""The values an SMTP session takes and hands out: its target, and what a transaction came to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kumoclient.records import Reply

Transcript = Callable[[str, str], None]  # (direction '>', '<' or '*', line without CRLF)

# Exchange.kind
ACCEPTED = "accepted"
REJECTED = "rejected"
TRANSPORT = "transport"
OUT_OF_TURN = "out_of_turn"
SMTPUTF8 = "smtputf8"


@dataclass(frozen=True, slots=True)
class Target:
    """One address of one MX host: `name` is the host's name (for TLS and logs)."""

    name: str
    address: str
    port: int

    @property
    def label(self) -> str:
        """`name` as used in failure texts and the peer_address of records."""
        if self.name == self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.name}:{self.port}"

    @property
    def where(self) -> str:
        """The label, with the address when the label is a name."""
        if self.name == self.address:
            return self.label
        return f"{self.label} ({self.address})"


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """What broke a transaction: its `phase`, the `reason`, and for a timeout the seconds
    waited and the command whose reply did not come."""

    phase: str
    reason: str
    timeout: float | None = None
    command: str | None = None


@dataclass(frozen=True, slots=True)
class Exchange:
    """The outcome of one message's transaction; `phase` is where it ended.

    `kind` is one of
      accepted     the final dot was answered 250 (`reply`);
      rejected     MAIL or RCPT not 2xx, DATA 400 or above, the dot not 250 (`reply`, which
                   remembers the command line it answered);
      out_of_turn  the server answered out of turn: DATA below 400 but not 354, or a reply
                   came with no command outstanding (`reply` is that reply; `phase` says
                   where: `DATA`, `before MAIL FROM`, `after RCPT TO`, `after final dot`...);
                   the transaction did not take place and the session is discarded;
      transport    a timeout or a broken connection (`failure`); the session is discarded;
      smtputf8     the envelope needs SMTPUTF8 and the server lacks it; nothing was sent.
    """

    kind: str
    phase: str
    reply: Reply | None = None
    failure: TransportFailure | None = None


def needs_smtputf8(sender: str, recipient: str) -> bool:
    """True when an envelope address is not ASCII (RFC 6531)."""
    return not (sender.isascii() and recipient.isascii())
