"""Reading RFC 5965 feedback reports (complaints, ARF) into `ArfReport`, KumoMTA's
`feedback_report`, with the supplemental trace header of the reported message decoded.

A report or not, decided in this order:
- None ("not a feedback report"): the message is not `multipart/report` with
  `report-type=feedback-report`.
- ReportError: it is, but no part of its own is `message/feedback-report`; `Feedback-Type`,
  `User-Agent` or `Version` is missing; a single field is given twice; `Incidents` is not a
  whole number; `Reporting-MTA` is not `type; name`; a line of the fields is not a field.
- Otherwise an ArfReport. The fields are the first block of the part (leading blank lines are
  skipped, what follows the next blank line is ignored). `arrival_date` is `Arrival-Date`, or
  `Received-Date` when that one is absent or cannot be read, or None; `Original-Mail-From` and
  `Original-Rcpt-To` lose their angle brackets; fields the RFC does not define go to
  `extensions` under their lower-case names.

The supplemental trace: the first `X-` header of the reported message whose value (white space
removed) is the base64 of a JSON object holding `"_@_": "\\_/"` is decoded; the object without
that key is `supplemental_trace`. A listener's `trace_headers.supplemental_header` adds such a
header (`X-KumoRef`), so a complaint leads back to the message's metadata.
"""

from __future__ import annotations

import base64
import json
from email.parser import BytesHeaderParser
from email.policy import compat32

from kumoclient.core.report_fields import (
    Fields,
    body,
    envelope_address,
    field_blocks,
    first_part,
    original_message,
    report_parts,
    shown,
)
from kumoclient.errors import ReportError
from kumoclient.records import ArfReport

REPORT = "feedback-report"
FEEDBACK_TYPES = frozenset({"message/feedback-report"})
_MARKER_KEY, _MARKER = "_@_", "\\_/"
_MAX_INCIDENTS = 2**32 - 1  # KumoMTA counts them in 32 bits


def parse_arf(data: bytes) -> ArfReport | None:
    """The feedback report in a message; None when it is not one; ReportError when it says it
    is one but cannot be read (see the module's text)."""
    found = report_parts(data)
    if found is None or found[0] != REPORT:
        return None
    parts = found[1]
    part = first_part(parts, FEEDBACK_TYPES)
    if part is None:
        raise ReportError(REPORT, "the message has no feedback-report part")
    blocks = field_blocks(body(part))
    fields = Fields(blocks[0] if blocks else [], REPORT)
    original = original_message(parts)
    return ArfReport(
        feedback_type=fields.required("feedback-type"),
        user_agent=fields.required("user-agent"),
        version=fields.required("version"),
        arrival_date=_arrival_date(fields),
        incidents=_incidents(fields.single("incidents")),
        original_envelope_id=fields.single("original-envelope-id"),
        original_mail_from=_address(fields.single("original-mail-from")),
        reporting_mta=fields.mta("reporting-mta"),
        source_ip=fields.single("source-ip"),
        authentication_results=fields.every("authentication-results"),
        original_rcpto_to=tuple(envelope_address(v) for v in fields.every("original-rcpt-to")),
        reported_domain=fields.every("reported-domain"),
        reported_uri=fields.every("reported-uri"),
        extensions=fields.rest(),  # last: what the lines above did not take
        original_message=original,
        supplemental_trace=None if original is None else supplemental_trace(original),
    )


def _arrival_date(fields: Fields) -> float | None:
    arrival = fields.date("arrival-date")
    received = fields.date("received-date")
    return arrival if arrival is not None else received


def _incidents(value: str | None) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) > _MAX_INCIDENTS:
        raise ReportError(REPORT, f"expected a whole number, got {shown(value)}", field="incidents")
    return int(value)


def _address(value: str | None) -> str | None:
    return None if value is None else envelope_address(value)


def supplemental_trace(message: bytes) -> dict[str, object] | None:
    """The decoded supplemental trace header of a message (or header block); None when it has
    none."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(message)
    for name, value in headers.raw_items():
        if name.lower().startswith("x-"):
            payload = _trace_payload(str(value))
            if payload is not None:
                return payload
    return None


def _trace_payload(value: str) -> dict[str, object] | None:
    try:
        decoded = json.loads(base64.b64decode("".join(value.split()), validate=True))
    except (ValueError, RecursionError):  # not base64 (binascii.Error), not UTF-8, not JSON
        return None
    if not isinstance(decoded, dict) or decoded.get(_MARKER_KEY) != _MARKER:
        return None
    return {key: item for key, item in decoded.items() if key != _MARKER_KEY}
