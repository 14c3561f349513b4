"""The data section of a session: its end found in the buffer, its content checked (and its
line endings made CRLF with `invalid_line_endings = 'Fix'`), then stored by the listener's
`accept` while the session waits (or dropped as it arrives when it is too large, and refused
at its end)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kumoclient import logs
from kumoclient.configs import LineEndings
from kumoclient.core.listener_domain import RELAY, RelayDisposition
from kumoclient.core.smtp_server import (
    MailFrom,
    content_problem,
    fix_line_endings,
    has_long_line,
    unstuff,
)
from kumoclient.errors import CommandError, SubmissionRefused
from kumoclient.listener import replies
from kumoclient.listener.connection import Transaction

if TYPE_CHECKING:
    from kumoclient.listener.session import Session

log = logs.get_logger(__name__)

_END = b"\r\n.\r\n"


def data_step(session: Session) -> bool:
    """Take the data section once its end is in the buffer; False while it is not."""
    buffer = session.buffer
    keys = session.keys
    if session.data_error is None and buffer.startswith(b".\r\n"):
        end = -2  # the empty message (the buffer starts where the data does)
    else:
        end = buffer.find(_END, max(0, session.scanned - 4))
    if end == -1:
        session.scanned = len(buffer)
        if len(buffer) > keys.data_limit:  # drop it; keep what may start the end
            if session.data_error is None:
                long_line = has_long_line(buffer, keys.line_limit)
                session.data_error = (
                    "500 5.5.2 Line too long" if long_line else "552 5.3.4 Message too big"
                )
            del buffer[:-4]
            session.scanned = len(buffer)
        return False
    with memoryview(buffer) as view:  # one copy of the data, not two
        data = bytes(view[: end + 2])
    del buffer[: end + 5]
    session.in_data = False
    session.command = "DATA"
    mail, rcpts, error = session.mail, session.rcpts, session.data_error
    dispositions = session.dispositions
    session.reset()
    assert mail is not None
    content = unstuff(data)
    del data
    endings = keys.config.invalid_line_endings
    if error is None:
        if has_long_line(content, keys.line_limit):
            error = "500 5.5.2 Line too long"
        elif len(content) > keys.size_limit:
            error = "552 5.3.4 Message too big"
        else:
            error = content_problem(content, mail.smtputf8, endings)
    if error is not None:
        session.say(error)
        return True
    if endings is LineEndings.FIX:
        content = fix_line_endings(content)
    session.busy = True
    session.storing = len(content)
    session.spawn(_store(session, mail, rcpts, dispositions, content))
    return True


async def _store(
    session: Session,
    mail: MailFrom,
    rcpts: list[str],
    dispositions: list[RelayDisposition],
    content: bytes,
) -> None:
    if len(dispositions) < len(rcpts):  # (a recipient taken before the policy had domains)
        dispositions = [*dispositions, *[RELAY] * (len(rcpts) - len(dispositions))]
    transaction = Transaction(
        mail.address, rcpts, dispositions, content, mail.smtputf8, session.conn, session.keys.config
    )
    del content
    try:
        reply = await session.listener.accept(transaction)
    except SubmissionRefused as refused:
        reply = f"{refused.code} {refused.text}"
    except CommandError as refused:  # the policy's kumo.reject / kumo.disconnect
        finish(session)
        replies.refuse(session, refused)
        session.resume()
        return
    except Exception:  # a bug of ours: the client keeps its copy and tries again
        log.exception("accepting a message failed", peer=session.peer)
        reply = "451 4.3.0 Local error in processing, try again later"
    finish(session)
    session.say(reply)
    session.resume()


def finish(session: Session) -> None:
    """The message is stored or refused: its bytes no longer count."""
    session.storing = 0
    session.listener.budget.finished(session)
