"""Log records as policy tests look at them: the engine's typed record (decoded by the one codec,
core.log_record) with its response taken apart."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kumoclient.core import log_record
from kumoclient.records import FINAL_TYPES, RecordType


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A log record of the engine (SPEC 6) with its response taken apart.

    `type` is `Reception`, `Delivery`, `TransientFailure`, `Bounce`, `Expiration` or
    `AdminBounce`; `code`, `enhanced_code` (`"4.2.2"`), `content` and `command` come from the
    record's `response` (None / `""` when it has none); `raw` is the record as logged.
    """

    type: str
    id: str
    recipient: str
    code: int | None
    enhanced_code: str | None
    content: str
    command: str | None
    num_attempts: int
    raw: dict[str, Any]

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LogRecord:
        """The record of a log line's JSON object (LogRecordError when it is not one)."""
        typed = log_record.decode(record)
        reply = typed.response
        enhanced = reply.enhanced_code if reply is not None else None
        return cls(
            type=typed.type.value,
            id=typed.id,
            recipient=typed.recipient,
            code=reply.code if reply is not None else None,
            enhanced_code=None if enhanced is None else str(enhanced),
            content=reply.content if reply is not None else "",
            command=reply.command if reply is not None else None,
            num_attempts=typed.num_attempts,
            raw=dict(record),
        )

    @property
    def response(self) -> str:
        """The response as one line: `500 4.2.2 text`."""
        parts = [str(self.code) if self.code is not None else "", self.enhanced_code or ""]
        return " ".join(p for p in [*parts, self.content] if p)

    @property
    def final(self) -> bool:
        """True for the records that end a message's life (all but Reception, TransientFailure)."""
        return RecordType(self.type) in FINAL_TYPES

    def __str__(self) -> str:
        return f"{self.type}: {self.response}" if self.code is not None else self.type
