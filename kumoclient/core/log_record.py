"""The one codec of log records (SPEC 6): a `LogRecord` to the JSON object of its log line, and
back. Used by the log writer, the testing plugin and `policy rewrite --replay`.

Rules: KumoMTA's field names; `response.content` never holds a line break (CRLF, CR and LF
become a space); `timestamp` is whole Unix seconds and `event_time` RFC 3339 with
microseconds, both of `when`; `created`/`created_time` likewise of the message's creation;
`tls_protocol_version` and `tls_cipher` appear only when the session used TLS;
`feedback_report` (KumoMTA's ARF object) only on Feedback records, where KumoMTA writes null on
the others (its reader takes a missing field as null). Decoding takes
what encoding wrote (and what KumoMTA writes, ignoring fields it does not know; absent fields
other than `type` and `id` take their defaults) and raises LogRecordError naming the first
field that is wrong.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from kumoclient.core.reply import flatten
from kumoclient.core.report_fields import bytes_json, date_json, mta_json
from kumoclient.errors import LogRecordError
from kumoclient.records import ArfReport, EnhancedCode, LogRecord, RecordType, RemoteMta, Reply

_SECONDS: dict[int, str] = {}  # whole seconds already formatted (records come in bursts)


def rfc3339(when: float) -> str:
    """`2026-12-07T08:00:00.123456Z`."""
    second = int(when)
    text = _SECONDS.get(second)
    if text is None:
        if len(_SECONDS) >= 256:
            _SECONDS.clear()
        stamp = datetime.datetime.fromtimestamp(second, datetime.UTC)
        text = _SECONDS[second] = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{min(int((when - second) * 1e6), 999_999):06d}Z"


def _response(reply: Reply) -> dict[str, object]:
    enhanced = reply.enhanced_code
    return {
        "code": reply.code,
        "enhanced_code": None
        if enhanced is None
        else {"class": enhanced.klass, "subject": enhanced.subject, "detail": enhanced.detail},
        "content": flatten(reply.content, " "),
        "command": reply.command,
    }


def encode(record: LogRecord) -> dict[str, object]:
    """The JSON object of a record's log line."""
    peer = record.peer_address
    fields: dict[str, object] = {
        "type": record.type.value,
        "id": record.id,
        "sender": record.sender,
        "recipient": record.recipient,
        "queue": record.queue,
        "site": record.site,
        "size": record.size,
        "response": None if record.response is None else _response(record.response),
        "peer_address": None if peer is None else {"name": peer[0], "addr": peer[1]},
        "timestamp": int(record.when),
        "event_time": rfc3339(record.when),
        "created": int(record.created),
        "created_time": rfc3339(record.created),
        "num_attempts": record.num_attempts,
        "egress_pool": record.egress_pool,
        "egress_source": record.egress_source,
        "meta": record.meta,
        "delivery_protocol": record.delivery_protocol,
        "reception_protocol": record.reception_protocol,
        "nodeid": record.nodeid,
    }
    if record.tls is not None:
        fields["tls_protocol_version"], fields["tls_cipher"] = record.tls
    if record.feedback_report is not None:
        fields["feedback_report"] = encode_feedback_report(record.feedback_report)
    return fields


def decode(fields: object) -> LogRecord:
    """A record from the JSON object of a log line; LogRecordError when it is not one."""
    if not isinstance(fields, Mapping):
        raise LogRecordError("a log record is a JSON object")
    try:
        kind = RecordType(fields.get("type"))
    except ValueError:
        raise LogRecordError(f"type: unknown record type {fields.get('type')!r}") from None
    peer = fields.get("peer_address")
    tls = fields.get("tls_protocol_version"), fields.get("tls_cipher")
    return LogRecord(
        type=kind,
        id=_text(fields, "id"),
        sender=_text(fields, "sender", ""),
        recipient=_text(fields, "recipient", ""),
        queue=_text(fields, "queue", ""),
        when=_seconds(fields, "timestamp", "event_time"),
        created=_seconds(fields, "created", "created_time"),
        size=_number(fields, "size", int),
        site=_text(fields, "site", ""),
        response=decode_response(fields.get("response")),
        peer_address=None
        if not isinstance(peer, Mapping)
        else (str(peer.get("name", "")), str(peer.get("addr", ""))),
        num_attempts=_number(fields, "num_attempts", int),
        egress_pool=_text(fields, "egress_pool", "unspecified"),
        egress_source=_text(fields, "egress_source", "unspecified"),
        meta=_meta(fields.get("meta")),
        delivery_protocol=_text(fields, "delivery_protocol", "ESMTP"),
        reception_protocol=_text(fields, "reception_protocol", "ESMTP"),
        nodeid=_text(fields, "nodeid", ""),
        tls=(str(tls[0]), str(tls[1])) if tls[0] is not None else None,
        feedback_report=decode_feedback_report(fields.get("feedback_report")),
    )


def _text(fields: Mapping[str, Any], key: str, default: str | None = None) -> str:
    value = fields.get(key, default)
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise LogRecordError(f"{key}: expected a string, got {value!r}")
    return value


def _number(fields: Mapping[str, Any], key: str, kind: type[int] | type[float]) -> Any:
    value = fields.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LogRecordError(f"{key}: expected a number, got {value!r}")
    return kind(value)


def _seconds(fields: Mapping[str, Any], key: str, precise: str) -> float:
    """Unix seconds, with the fraction of the RFC 3339 form when it has one."""
    whole = float(_number(fields, key, float))
    text = fields.get(precise)
    if isinstance(text, str):
        try:
            stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return whole
        return stamp.timestamp()
    return whole


def _meta(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LogRecordError(f"meta: expected an object, got {value!r}")
    return {str(key): item for key, item in value.items()}


def decode_response(value: object) -> Reply | None:
    """The `response` object of a record (None for null); LogRecordError when malformed."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise LogRecordError(f"response: expected an object, got {value!r}")
    code = value.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise LogRecordError(f"response.code: expected an integer, got {code!r}")
    enhanced = value.get("enhanced_code")
    parsed: EnhancedCode | None = None
    if enhanced is not None:
        try:
            parsed = EnhancedCode(
                int(enhanced["class"]), int(enhanced["subject"]), int(enhanced["detail"])
            )
        except (KeyError, TypeError, ValueError):
            raise LogRecordError(f"response.enhanced_code: malformed {enhanced!r}") from None
    content = value.get("content", "")
    command = value.get("command")
    if not isinstance(content, str) or not (command is None or isinstance(command, str)):
        raise LogRecordError("response.content and command must be strings")
    return Reply(code, parsed, content, command)


# --- feedback_report (RFC 5965, KumoMTA's ARFReport) -----------------------------------------


def encode_feedback_report(report: ArfReport) -> dict[str, object]:
    """KumoMTA's `feedback_report` object: its field names, null for absent values, RFC 3339
    dates, lists for repeatable fields, the original message as text (or byte values when it is
    not UTF-8)."""
    return {
        "feedback_type": report.feedback_type,
        "user_agent": report.user_agent,
        "version": report.version,
        "arrival_date": date_json(report.arrival_date),
        "incidents": report.incidents,
        "original_envelope_id": report.original_envelope_id,
        "original_mail_from": report.original_mail_from,
        "reporting_mta": mta_json(report.reporting_mta),
        "source_ip": report.source_ip,
        "authentication_results": list(report.authentication_results),
        "original_rcpto_to": list(report.original_rcpto_to),
        "reported_domain": list(report.reported_domain),
        "reported_uri": list(report.reported_uri),
        "extensions": {name: list(values) for name, values in report.extensions.items()},
        "original_message": bytes_json(report.original_message),
        "supplemental_trace": report.supplemental_trace,
    }


def decode_feedback_report(value: object) -> ArfReport | None:
    """The report of a `feedback_report` object (None for null); LogRecordError naming the
    field that is wrong. Absent optional fields take their defaults, as in KumoMTA's reader."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise LogRecordError(f"feedback_report: expected an object, got {value!r}")
    trace = value.get("supplemental_trace")
    if trace is not None and not isinstance(trace, Mapping):
        raise LogRecordError(
            f"feedback_report.supplemental_trace: expected an object, got {trace!r}"
        )
    return ArfReport(
        feedback_type=_arf_required(value, "feedback_type"),
        user_agent=_arf_required(value, "user_agent"),
        version=_arf_required(value, "version"),
        arrival_date=_arf_date(value, "arrival_date"),
        incidents=_arf_incidents(value.get("incidents")),
        original_envelope_id=_arf_optional(value, "original_envelope_id"),
        original_mail_from=_arf_optional(value, "original_mail_from"),
        reporting_mta=_arf_mta(value.get("reporting_mta")),
        source_ip=_arf_optional(value, "source_ip"),
        authentication_results=_arf_strings(value, "authentication_results"),
        original_rcpto_to=_arf_strings(value, "original_rcpto_to"),
        reported_domain=_arf_strings(value, "reported_domain"),
        reported_uri=_arf_strings(value, "reported_uri"),
        extensions=_arf_extensions(value.get("extensions")),
        original_message=_arf_bytes(value.get("original_message"), "original_message"),
        supplemental_trace=None if trace is None else dict(trace),
    )


def _arf_optional(report: Mapping[str, Any], key: str) -> str | None:
    item = report.get(key)
    if item is not None and not isinstance(item, str):
        raise LogRecordError(f"feedback_report.{key}: expected a string, got {item!r}")
    return item


def _arf_required(report: Mapping[str, Any], key: str) -> str:
    item = _arf_optional(report, key)
    if item is None:
        raise LogRecordError(f"feedback_report.{key}: missing")
    return item


def _arf_strings(report: Mapping[str, Any], key: str) -> tuple[str, ...]:
    items = report.get(key) or []
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise LogRecordError(f"feedback_report.{key}: expected a list of strings, got {items!r}")
    return tuple(items)


def _arf_date(report: Mapping[str, Any], key: str) -> float | None:
    text = report.get(key)
    if text is None:
        return None
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise LogRecordError(f"feedback_report.{key}: not an RFC 3339 date: {text!r}") from None


def _arf_incidents(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LogRecordError(f"feedback_report.incidents: expected a count, got {value!r}")
    return value


def _arf_mta(value: object) -> RemoteMta | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        kind, name = value.get("mta_type"), value.get("name")
        if isinstance(kind, str) and isinstance(name, str):
            return RemoteMta(kind, name)
    raise LogRecordError(
        f"feedback_report.reporting_mta: expected {{mta_type, name}}, got {value!r}"
    )


def _arf_extensions(value: object) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, list) for v in value.values()):
        raise LogRecordError(f"feedback_report.extensions: expected lists by name, got {value!r}")
    return {
        str(name): tuple(
            text if isinstance(text, str) else _bytes_text(text, f"extensions.{name}")
            for text in values
        )
        for name, values in value.items()
    }


def _bytes_text(value: object, key: str) -> str:
    """A value KumoMTA wrote as byte values because it was not UTF-8."""
    data = _arf_bytes(value, key)
    return "" if data is None else data.decode("utf-8", "replace")


def _arf_bytes(value: object, key: str) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return value.encode("utf-8", "surrogateescape")  # bytes read as escapes, back
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace")
    if isinstance(value, list) and all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value
    ):
        return bytes(value)
    raise LogRecordError(f"feedback_report.{key}: expected text or byte values, got {value!r}")
