"""Reading RFC 3464 delivery status notifications (bounces that arrive as mail) into typed
records with KumoMTA's structure: what `msg:parse_rfc3464()` returns and OOB records are made of.

A report or not, decided in this order:
- None ("not a delivery status report"): the message is not `multipart/report`, or its
  `report-type` names another kind of report (`feedback-report`, `disposition-notification`).
  A `multipart/report` without a `report-type` is one when a part of its own is
  `message/delivery-status` (or `message/global-delivery-status`), else None too.
- ReportError: `report-type=delivery-status` but no such part among its own parts; a status
  part with no per-message block; a `Reporting-MTA`, `Final-Recipient`, `Action` or `Status`
  missing; a single field given twice; a value without its syntax (`type; value`
  fields, an `Action` other than failed, delayed, delivered, relayed, expanded, a `Status` not
  `N.N.N`); a line in a block that is not a field (report_fields).
- Otherwise a DsnReport. Leniency, all documented in docs/reception.md: a date that cannot be read
  is None; blank-line runs (lines of spaces too) separate blocks; `Action` and the `rfc822` and
  `smtp` type names are read in any case; an `rfc822` address loses its angle brackets; fields
  the RFC does not define go to `extensions` under their lower-case names.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from kumoclient.core.report_fields import (
    Fields,
    body,
    bytes_json,
    date_json,
    envelope_address,
    field_blocks,
    first_part,
    mta_json,
    original_message,
    report_parts,
    shown,
)
from kumoclient.errors import ReportError
from kumoclient.records import RemoteMta

REPORT = "delivery-status"
STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_REPORT_TYPES = frozenset({"", "delivery-status", "global-delivery-status"})
_STATUS = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)(?:[ \t]+(.*))?")


class Action(enum.Enum):
    """What the reporting MTA did for a recipient (RFC 3464 `Action`)."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"


@dataclass(frozen=True, slots=True)
class Status:
    """`Status: 5.1.1 (comment)`: an RFC 3463 code and the text after it (None when none)."""

    klass: int
    subject: int
    detail: int
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Recipient:
    """`rfc822; user@example.com`: the address type and the address."""

    recipient_type: str
    recipient: str


@dataclass(frozen=True, slots=True)
class DiagnosticCode:
    """`smtp; 550 5.1.1 no such user`: the diagnostic type and the text."""

    diagnostic_type: str
    diagnostic: str


@dataclass(frozen=True, slots=True)
class PerMessage:
    """The per-message fields of a report. Dates are Unix seconds."""

    reporting_mta: RemoteMta
    original_envelope_id: str | None = None
    dsn_gateway: RemoteMta | None = None
    received_from_mta: RemoteMta | None = None
    arrival_date: float | None = None
    extensions: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PerRecipient:
    """The fields of one recipient of a report. Dates are Unix seconds."""

    final_recipient: Recipient
    action: Action
    status: Status
    original_recipient: Recipient | None = None
    remote_mta: RemoteMta | None = None
    diagnostic_code: DiagnosticCode | None = None
    last_attempt_date: float | None = None
    final_log_id: str | None = None
    will_retry_until: float | None = None
    extensions: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DsnReport:
    """A delivery status report: its per-message fields, one entry per recipient, and the
    returned message (or its header block) as sent, with LF line endings."""

    per_message: PerMessage
    per_recipient: tuple[PerRecipient, ...]
    original_message: bytes | None = None


def parse_dsn(data: bytes) -> DsnReport | None:
    """The delivery status report in a message; None when it is not one; ReportError when it
    says it is one but cannot be read (see the module's text)."""
    found = report_parts(data)
    if found is None or found[0] not in _REPORT_TYPES:
        return None
    report_type, parts = found
    status = first_part(parts, STATUS_TYPES)
    if status is None:
        if report_type:
            raise ReportError(REPORT, "the message has no delivery-status part")
        return None  # a report that does not say what it is, and is not this kind
    blocks = field_blocks(body(status))
    if not blocks:
        raise ReportError(REPORT, "the delivery-status part is empty", field="reporting-mta")
    return DsnReport(
        per_message=_per_message(Fields(blocks[0], REPORT)),
        per_recipient=tuple(_per_recipient(Fields(block, REPORT)) for block in blocks[1:]),
        original_message=original_message(parts),
    )


def _per_message(fields: Fields) -> PerMessage:
    reporting_mta = fields.mta("reporting-mta")
    if reporting_mta is None:
        raise ReportError(REPORT, "missing", field="reporting-mta")
    return PerMessage(
        reporting_mta=reporting_mta,
        original_envelope_id=fields.single("original-envelope-id"),
        dsn_gateway=fields.mta("dsn-gateway"),
        received_from_mta=fields.mta("received-from-mta"),
        arrival_date=fields.date("arrival-date"),
        extensions=fields.rest(),
    )


def _per_recipient(fields: Fields) -> PerRecipient:
    final_recipient = _recipient(fields, "final-recipient")
    if final_recipient is None:
        raise ReportError(REPORT, "missing", field="final-recipient")
    diagnostic = fields.typed("diagnostic-code")
    return PerRecipient(
        final_recipient=final_recipient,
        action=_action(fields.required("action")),
        status=_status(fields.required("status")),
        original_recipient=_recipient(fields, "original-recipient"),
        remote_mta=fields.mta("remote-mta"),
        diagnostic_code=None if diagnostic is None else DiagnosticCode(*diagnostic),
        last_attempt_date=fields.date("last-attempt-date"),
        final_log_id=fields.single("final-log-id"),
        will_retry_until=fields.date("will-retry-until"),
        extensions=fields.rest(),
    )


def _recipient(fields: Fields, name: str) -> Recipient | None:
    pair = fields.typed(name)
    if pair is None:
        return None
    kind, address = pair
    return Recipient(kind, envelope_address(address) if kind.lower() == "rfc822" else address)


def _action(value: str) -> Action:
    try:
        return Action(value.lower())
    except ValueError:
        raise ReportError(REPORT, f"unknown action {shown(value)}", field="action") from None


def _status(value: str) -> Status:
    match = _STATUS.fullmatch(value)
    if match is None:
        raise ReportError(REPORT, f"expected N.N.N, got {shown(value)}", field="status")
    klass, subject, detail = int(match[1]), int(match[2]), int(match[3])
    if klass > 255 or subject > 65535 or detail > 65535:
        raise ReportError(REPORT, f"out of range: {shown(value)}", field="status")
    return Status(klass, subject, detail, match[4] or None)


# --- the plain form (KumoMTA's JSON and Lua shape) --------------------------------------------


def dsn_json(report: DsnReport) -> dict[str, object]:
    """The report as KumoMTA gives it to Lua and JSON: its field names, null for absent
    values, RFC 3339 dates, the original message as text (or bytes when not UTF-8)."""
    message = report.per_message
    return {
        "per_message": {
            "original_envelope_id": message.original_envelope_id,
            "reporting_mta": mta_json(message.reporting_mta),
            "dsn_gateway": mta_json(message.dsn_gateway),
            "received_from_mta": mta_json(message.received_from_mta),
            "arrival_date": date_json(message.arrival_date),
            "extensions": _extensions_json(message.extensions),
        },
        "per_recipient": [_recipient_json(entry) for entry in report.per_recipient],
        "original_message": bytes_json(report.original_message),
    }


def _recipient_json(entry: PerRecipient) -> dict[str, object]:
    status, diagnostic = entry.status, entry.diagnostic_code
    return {
        "final_recipient": _address_json(entry.final_recipient),
        "action": entry.action.value,
        "status": {
            "class": status.klass,
            "subject": status.subject,
            "detail": status.detail,
            "comment": status.comment,
        },
        "original_recipient": _address_json(entry.original_recipient),
        "remote_mta": mta_json(entry.remote_mta),
        "diagnostic_code": None
        if diagnostic is None
        else {
            "diagnostic_type": diagnostic.diagnostic_type,
            "diagnostic": diagnostic.diagnostic,
        },
        "last_attempt_date": date_json(entry.last_attempt_date),
        "final_log_id": entry.final_log_id,
        "will_retry_until": date_json(entry.will_retry_until),
        "extensions": _extensions_json(entry.extensions),
    }


def _address_json(recipient: Recipient | None) -> dict[str, str] | None:
    if recipient is None:
        return None
    return {"recipient_type": recipient.recipient_type, "recipient": recipient.recipient}


def _extensions_json(extensions: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    return {name: list(values) for name, values in extensions.items()}
