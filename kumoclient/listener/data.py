"""The data section of a session: its end found in the buffer, its content checked, then
stored by the listener's `accept` while the session waits (or dropped as it arrives when it
is too large, and refused at its end)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kumoclient import logs
from kumoclient.core.smtp_server import MailFrom, content_problem, has_long_line, unstuff
from kumoclient.errors import SubmissionRefused

if TYPE_CHECKING:
    from kumoclient.listener.session import Session

log = logs.get_logger(__name__)

_END = b"\r\n.\r\n"


def data_step(session: Session) -> bool:
    """Take the data section once its end is in the buffer; False while it is not."""
    buffer = session.buffer
    if session.data_error is None and buffer.startswith(b".\r\n"):
        end = -2  # the empty message (the buffer starts where the data does)
    else:
        end = buffer.find(_END, max(0, session.scanned - 4))
    if end == -1:
        session.scanned = len(buffer)
        if len(buffer) > session.listener.data_limit:  # drop it; keep what may start the end
            if session.data_error is None:
                long_line = has_long_line(buffer)
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
    mail, rcpts, error = session.mail, session.rcpts, session.data_error
    session.reset()
    assert mail is not None
    content = unstuff(data)
    del data
    if error is None:
        if has_long_line(content):
            error = "500 5.5.2 Line too long"
        elif len(content) > session.listener.size_limit:
            error = "552 5.3.4 Message too big"
        else:
            error = content_problem(content, mail.smtputf8)
    if error is not None:
        session.out.append(error)
        return True
    session.busy = True
    session.storing = len(content)
    session.spawn(_store(session, mail, rcpts, content))
    return True


async def _store(session: Session, mail: MailFrom, rcpts: list[str], content: bytes) -> None:
    try:
        reply = await session.listener.accept(
            mail.address, rcpts, content, session.peer, mail.smtputf8
        )
    except SubmissionRefused as refused:
        reply = f"{refused.code} {refused.text}"
    except Exception:  # a bug of ours: the client keeps its copy and tries again
        log.exception("accepting a message failed", peer=session.peer)
        reply = "451 4.3.0 Local error in processing, try again later"
    del content
    session.storing = 0
    session.listener.budget.finished(session)
    session.out.append(reply)
    session.resume()
