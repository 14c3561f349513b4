"""The OOB and Feedback log records of an inbound report, made from the Reception record of the
report message and its parsed report, by KumoMTA's rules (its `log_disposition`).

OOB (a bounce that came back as mail, to a `log_oob` listener domain): one record per recipient
entry whose action is `failed`, written after the Reception record; nothing for the others
(delayed, delivered, relayed, expanded), so a report without a failure gives none. Each is the
Reception record with:
- `recipient`: the entry's `Original-Recipient` address, else its `Final-Recipient` one;
- `sender`: the report message's (first) envelope recipient, the bounce address that the
  original message was sent from;
- `response`: `enhanced_code` the entry's `Status`; with an `smtp` `Diagnostic-Code`, `code` and
  `content` are its text split at the first space when the first word is a number (`550 5.1.1
  no such user`), else 550 and the whole text (`550-5.1.1 ...` and `host x says: 550 ...` too);
  with no diagnostic or another type, 550 and `""`; `command` null;
- `when` (`timestamp`): the entry's `Last-Attempt-Date`, else `now`;
- `peer_address`: the `Reporting-MTA` name, with the address of the peer that sent the report
  (`0.0.0.0` when the Reception record has none);
- `size` 0, `num_attempts` 0, no TLS fields.

Feedback (a complaint to a `log_arf` listener domain): the Reception record of the report
message becomes a Feedback record, logged instead of it, with the report in `feedback_report`;
sender, recipient, response (the reception's `250`), peer and size stay the reception's.
"""

from __future__ import annotations

from dataclasses import replace

from kumoclient.core.dsn_report import Action, DsnReport, PerRecipient
from kumoclient.records import ArfReport, EnhancedCode, LogRecord, RecordType, Reply

NO_CODE = 550  # the code of an OOB record whose diagnostic gives none
UNKNOWN_ADDRESS = "0.0.0.0"
_MAX_CODE = 65535  # a code is any 16-bit number, as KumoMTA parses it


def oob_records(reception: LogRecord, report: DsnReport, now: float) -> list[LogRecord]:
    """The OOB records of a delivery status report that arrived as the message of `reception`
    (its Reception record); `now` is the time of those without a `Last-Attempt-Date`."""
    addr = UNKNOWN_ADDRESS if reception.peer_address is None else reception.peer_address[1]
    peer = (report.per_message.reporting_mta.name, addr)
    return [
        replace(
            reception,
            type=RecordType.OOB,
            sender=reception.recipient,
            recipient=(entry.original_recipient or entry.final_recipient).recipient,
            when=now if entry.last_attempt_date is None else entry.last_attempt_date,
            size=0,
            response=oob_response(entry),
            peer_address=peer,
            num_attempts=0,
            tls=None,
            feedback_report=None,
        )
        for entry in report.per_recipient
        if entry.action is Action.FAILED
    ]


def oob_response(entry: PerRecipient) -> Reply:
    """The `response` of the OOB record of one recipient entry."""
    status = entry.status
    enhanced = EnhancedCode(status.klass, status.subject, status.detail)
    diagnostic = entry.diagnostic_code
    if diagnostic is None or diagnostic.diagnostic_type.lower() != "smtp":
        return Reply(NO_CODE, enhanced, "")
    text = diagnostic.diagnostic
    first, space, rest = text.partition(" ")
    if space and first.isascii() and first.isdigit() and int(first) <= _MAX_CODE:
        return Reply(int(first), enhanced, rest)
    return Reply(NO_CODE, enhanced, text)


def feedback_record(reception: LogRecord, report: ArfReport) -> LogRecord:
    """The Feedback record that replaces the Reception record of a complaint."""
    return replace(reception, type=RecordType.FEEDBACK, feedback_report=report)
