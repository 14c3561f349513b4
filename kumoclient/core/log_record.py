"""The one codec of log records (SPEC 6): a `LogRecord` to the JSON object of its log line, and
back. Used by the log writer, the testing plugin and `policy rewrite --replay`.

Rules: KumoMTA's field names; `response.content` never holds a line break (CRLF, CR and LF
become a space); `timestamp` is whole Unix seconds and `event_time` RFC 3339 with
microseconds, both of `when`; `created`/`created_time` likewise of the message's creation;
`tls_protocol_version` and `tls_cipher` appear only when the session used TLS. Decoding takes
what encoding wrote (and what KumoMTA writes, ignoring fields it does not know; absent fields
other than `type` and `id` take their defaults) and raises LogRecordError naming the first
field that is wrong.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from kumoclient.core.reply import flatten
from kumoclient.errors import LogRecordError
from kumoclient.records import EnhancedCode, LogRecord, RecordType, Reply

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
