"""Every reply kumoclient makes up itself, in one table: what a failure with no server reply
to log (or a decision of its own) looks like in a log record.

KumoMTA's codes and wording, so log processing written for KumoMTA reads them the same way:

| kind              | code | enhanced | when                                                  |
|-------------------|------|----------|-------------------------------------------------------|
| CONNECT_FAILED    | 400  | -        | no candidate host of a site could be used (SPEC 2.1)   |
| TIMEOUT           | 421  | 4.4.2    | a command's reply did not come in time (SPEC 2.2)      |
| TRANSPORT         | 400  | -        | the connection broke or talked nonsense mid-transaction|
| OUT_OF_TURN       | 400  | -        | a reply that answers no command, or DATA answered <400 |
|                   |      |          | but not 354: the transaction did not happen (SPEC 2.3) |
| SMTPUTF8_MISSING  | 554  | 5.6.7    | the envelope needs SMTPUTF8, the server lacks it       |
| PROHIBITED        | 550  | 5.4.4    | a destination address is in prohibited_hosts           |
| NULL_MX           | 556  | 5.1.10   | the domain publishes a null MX (RFC 7505)              |
| DNS_FAILURE       | 451  | 4.4.4    | MX or address lookup failed (never a bounce)           |
| POLICY_FAILURE    | 451  | 4.3.0    | a policy event needed for routing failed               |
| INTERNAL_ERROR    | 400  | -        | a bug of kumoclient's in an attempt: retried           |
| ADMIN_BOUNCE      | 551  | 5.7.1    | an operator bounced the message                        |
| EXPIRED           | 551  | 5.4.7    | the message reached max_age while waiting              |
| EXPIRED_NEXT_DUE  | 551  | 5.4.7    | its next attempt would come after max_age              |
| EXPIRED_SCHEDULED | 551  | 5.4.7    | it reached its own expiry time (msg:set_scheduling)    |
|   (and _NEXT_DUE_)|      |          | while waiting, or its next attempt would come after it |

The text templates take named fields; a field's value is inserted as it is (never parsed
again as a template) and the record codec makes every text one line.
"""

from __future__ import annotations

import datetime
import enum

from kumoclient.records import EnhancedCode, Reply


class Synthesized(enum.Enum):
    """The kinds of made-up reply; see the module's table."""

    CONNECT_FAILED = "connect_failed"
    TIMEOUT = "timeout"
    TRANSPORT = "transport"
    OUT_OF_TURN = "out_of_turn"
    SMTPUTF8_MISSING = "smtputf8_missing"
    PROHIBITED = "prohibited"
    NULL_MX = "null_mx"
    DNS_FAILURE = "dns_failure"
    POLICY_FAILURE = "policy_failure"
    INTERNAL_ERROR = "internal_error"
    ADMIN_BOUNCE = "admin_bounce"
    EXPIRED = "expired"
    EXPIRED_NEXT_DUE = "expired_next_due"
    EXPIRED_SCHEDULED = "expired_scheduled"
    EXPIRED_NEXT_DUE_SCHEDULED = "expired_next_due_scheduled"


_INTERNAL = "KumoMTA internal: "
_MAX_AGE = "configured via max_age"
_SET_SCHEDULING = "configured via set_scheduling"

TABLE: dict[Synthesized, tuple[int, EnhancedCode | None, str]] = {
    Synthesized.CONNECT_FAILED: (400, None, "failed to connect to any candidate hosts: {failures}"),
    Synthesized.TIMEOUT: (
        421,
        EnhancedCode(4, 4, 2),
        _INTERNAL + "failed to send message to {target}: "
        "Timed Out waiting {timeout}s for response to {command} ({phase})",
    ),
    Synthesized.TRANSPORT: (400, None, _INTERNAL + "failed to send message: {phase}: {reason}"),
    Synthesized.OUT_OF_TURN: (
        400,
        None,
        _INTERNAL + "the transaction did not take place: {phase}: unexpected reply {reply}",
    ),
    Synthesized.SMTPUTF8_MISSING: (
        554,
        EnhancedCode(5, 6, 7),
        _INTERNAL + "the envelope needs SMTPUTF8, which the server lacks",
    ),
    Synthesized.PROHIBITED: (
        550,
        EnhancedCode(5, 4, 4),
        _INTERNAL + "{address} is on the list of prohibited_hosts",
    ),
    Synthesized.NULL_MX: (556, EnhancedCode(5, 1, 10), "Recipient address has a null MX"),
    Synthesized.DNS_FAILURE: (
        451,
        EnhancedCode(4, 4, 4),
        _INTERNAL + "failed to resolve queue {queue}: {reason}",
    ),
    Synthesized.POLICY_FAILURE: (
        451,
        EnhancedCode(4, 3, 0),
        _INTERNAL + "policy error while routing: {error}",
    ),
    Synthesized.INTERNAL_ERROR: (400, None, _INTERNAL + "delivery attempt failed: {error}"),
    Synthesized.ADMIN_BOUNCE: (551, EnhancedCode(5, 7, 1), "Administrative bounce: {reason}"),
    Synthesized.EXPIRED: (
        551,
        EnhancedCode(5, 4, 7),
        "Message is older than the expiry time {limit} " + _MAX_AGE,
    ),
    Synthesized.EXPIRED_NEXT_DUE: (
        551,
        EnhancedCode(5, 4, 7),
        "Next delivery time would be at {next_due} which exceeds the expiry time {limit} "
        + _MAX_AGE,
    ),
    Synthesized.EXPIRED_SCHEDULED: (
        551,
        EnhancedCode(5, 4, 7),
        "Message reached the expiry time {limit} " + _SET_SCHEDULING,
    ),
    Synthesized.EXPIRED_NEXT_DUE_SCHEDULED: (
        551,
        EnhancedCode(5, 4, 7),
        "Next delivery time would be at {next_due} which exceeds the expiry time {limit} "
        + _SET_SCHEDULING,
    ),
}


def synthesize(kind: Synthesized, **fields: object) -> Reply:
    """The reply of `kind` with its template's fields filled in (no command: made up here)."""
    code, enhanced, template = TABLE[kind]
    return Reply(code, enhanced, template.format(**fields))


def admin_bounce(reason: str) -> Reply:
    """An operator's bounce; the reason loses its line breaks (a record is one line)."""
    return synthesize(Synthesized.ADMIN_BOUNCE, reason=" ".join(reason.split()))


def iso_time(when: float) -> str:
    """`2026-12-07T08:00:00Z`: the times in the expiry texts."""
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
