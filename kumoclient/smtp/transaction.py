"""One message's transaction on an open channel: MAIL FROM, RCPT TO, DATA, the content and
the final dot, each reply under its own timeout (SPEC 2.2, 2.3, 5.2), and what it came to.

- MAIL FROM carries `SMTPUTF8` when an address needs it (an envelope that needs it, to a
  server without it: nothing is sent, `smtputf8`), `BODY=8BITMIME` for 8-bit content when
  offered, `SIZE` when offered. The content is sent as spooled, only dot-stuffed, so
  signatures stay valid.
- With PIPELINING (RFC 2920) MAIL, RCPT and DATA go out in one write and every reply is read,
  in order: the first rejection is the transaction's (after a refused MAIL or RCPT the server
  refuses DATA too, and that later reply is not a rejection of its own); should a server
  answer DATA 354 anyway, an empty message is ended with the dot. Without it, one command at
  a time, and the first rejection ends the transaction.
- After a rejection, RSET; a failing RSET discards the connection.
- Out of turn (SPEC 2.3, amended): DATA answered below 400 but not 354, or a reply that came
  with no command outstanding (noticed before MAIL, after each reply, after the final dot's
  reply or the RSET's) means the transaction did not take place: `out_of_turn`, naming the
  reply and where, and the connection is discarded. A reply that comes later still, while the
  connection is idle, makes it unusable (`Channel.usable`), so the next message goes out on
  a new connection.
"""

from __future__ import annotations

from kumoclient.configs import EgressPathConfig
from kumoclient.records import Reply
from kumoclient.smtp.channel import Channel, TransportError
from kumoclient.smtp.values import (
    ACCEPTED,
    OUT_OF_TURN,
    REJECTED,
    SMTPUTF8,
    TRANSPORT,
    Exchange,
    needs_smtputf8,
)

Step = tuple[str, float, str]  # (command line, timeout, phase)


async def transact(
    channel: Channel, config: EgressPathConfig, sender: str, recipient: str, content: bytes
) -> Exchange:
    """One transaction. Never raises for anything the server or the network does."""
    options: list[str] = []
    if needs_smtputf8(sender, recipient):
        if not channel.supports("smtputf8"):
            return Exchange(SMTPUTF8, "MAIL FROM")
        options.append("SMTPUTF8")
    if not content.isascii() and channel.supports("8bitmime"):
        options.append("BODY=8BITMIME")
    if channel.supports("size"):
        options.append(f"SIZE={len(content)}")
    steps = (
        (" ".join([f"MAIL FROM:<{sender}>", *options]), config.mail_from_timeout, "MAIL FROM"),
        (f"RCPT TO:<{recipient}>", config.rcpt_to_timeout, "RCPT TO"),
        ("DATA", config.data_timeout, "DATA"),
    )
    early = _stray(channel, "before MAIL FROM")  # it came while the connection was idle
    if early is not None:
        channel.abort()
        return early
    try:
        exchange = await _envelope(channel, steps, config.data_dot_timeout)
        if exchange is None:  # DATA was answered 354
            reply = await channel.content(content, config.data_dot_timeout)
            exchange = Exchange(ACCEPTED if reply.code == 250 else REJECTED, "final dot", reply)
        elif exchange.kind == REJECTED:
            await _reset(channel, config.rset_timeout)
    except TransportError as exc:
        channel.abort()
        return Exchange(TRANSPORT, exc.phase, failure=exc.failure())
    if exchange.kind != OUT_OF_TURN:
        exchange = _stray(channel) or exchange
    if exchange.kind == OUT_OF_TURN:
        channel.abort()
    return exchange


async def _envelope(
    channel: Channel, steps: tuple[Step, ...], dot_timeout: float
) -> Exchange | None:
    """MAIL, RCPT and DATA: None when DATA was answered 354, else what ended it."""
    if channel.supports("pipelining"):
        return await _pipelined(channel, steps, dot_timeout)
    return await _lockstep(channel, steps)


async def _lockstep(channel: Channel, steps: tuple[Step, ...]) -> Exchange | None:
    """MAIL, RCPT, DATA one at a time; the first rejection ends the transaction."""
    for line, timeout, phase in steps:
        reply = await channel.command(line, timeout, phase)
        ended = _judge(phase, reply) or _stray(channel)
        if ended is not None:
            return ended
    return None


async def _pipelined(
    channel: Channel, steps: tuple[Step, ...], dot_timeout: float
) -> Exchange | None:
    """MAIL, RCPT and DATA in one write; every reply is read, in order (see the module's
    text). A DATA answered out of turn wins over an earlier rejection: the replies may not be
    paired with the commands they seem to answer."""
    channel.pipeline([(line, phase) for line, _, phase in steps])
    ended: Exchange | None = None
    for line, timeout, phase in steps:
        reply = await channel.read(line, timeout, phase)
        judged = _judge(phase, reply)
        if ended is None or (judged is not None and judged.kind == OUT_OF_TURN):
            ended = judged
        elif phase == "DATA" and reply.code == 354:  # after a rejection: end it empty
            channel.pipeline([(".", "final dot")])
            await channel.read(".", dot_timeout, "final dot")
    return ended


def _judge(phase: str, reply: Reply) -> Exchange | None:
    """None when the reply lets the transaction go on (2xx to MAIL and RCPT, 354 to DATA);
    else the rejection, or for DATA below 400 the out-of-turn answer."""
    if phase != "DATA":
        return None if reply.code // 100 == 2 else Exchange(REJECTED, phase, reply)
    if reply.code == 354:
        return None
    return Exchange(OUT_OF_TURN if reply.code < 400 else REJECTED, phase, reply)


def _stray(channel: Channel, where: str | None = None) -> Exchange | None:
    """The out-of-turn Exchange for a reply that answered no command, if one came."""
    found = channel.out_of_turn()
    if found is None:
        return None
    after, reply = found
    return Exchange(OUT_OF_TURN, where or f"after {after}", reply)


async def _reset(channel: Channel, timeout: float) -> None:
    """RSET after a failed transaction; a failing RSET breaks the connection."""
    try:
        reply = await channel.command("RSET", timeout, "RSET")
    except TransportError:
        channel.abort()
        return
    if reply.code != 250:
        channel.abort()
