"""Structured header values as a policy sees them (KumoMTA's shapes), read from header text and
written back.

| kind                   | Lua shape                                                        |
|------------------------|------------------------------------------------------------------|
| mailbox                | `{name = 'John Smith' or nil, address = {local_part, domain}}`   |
| mailbox_list           | a list of mailboxes                                              |
| address_list           | a list of mailboxes and groups `{name, entries = {mailbox...}}`  |
| message_id             | the id without its angle brackets                                |
| message_id_list        | a list of ids                                                    |
| mime_params            | `{value = 'text/plain', parameters = {charset = 'utf-8'}}`       |
| authentication_results | `{serv_id, version, results = {{method, method_version, result,  |
|                        | reason, props}}}` (RFC 8601)                                     |
| unstructured           | the decoded text                                                 |

`KIND_OF` names the kind of each header KumoMTA types (`header.value`); other headers are
unstructured. Reading raises ValueError when the text does not have the shape; writing takes
the shape or a string, which must read back as the shape (it is checked, then written as
given). Address lists are read with the standard library's RFC 5322 parser (an address it
reports as defective is refused); display names that are not ASCII are written as RFC 2047
encoded words, MIME parameter values that are not ASCII as RFC 2231 `name*=UTF-8''...`.
"""

from __future__ import annotations

import email.errors
import email.headerregistry
import email.policy
import re
import urllib.parse
from collections.abc import Callable
from typing import Any

from kumoclient.policy.message.headers import decode_value, q_encode, wrap

UNSTRUCTURED = "unstructured"
MAILBOX = "mailbox"
MAILBOX_LIST = "mailbox_list"
ADDRESS_LIST = "address_list"
MESSAGE_ID = "message_id"
MESSAGE_ID_LIST = "message_id_list"
MIME_PARAMS = "mime_params"
AUTHENTICATION_RESULTS = "authentication_results"
KINDS = (
    ADDRESS_LIST,
    AUTHENTICATION_RESULTS,
    MAILBOX,
    MAILBOX_LIST,
    MESSAGE_ID,
    MESSAGE_ID_LIST,
    MIME_PARAMS,
    UNSTRUCTURED,
)

KIND_OF = {
    "authentication-results": AUTHENTICATION_RESULTS,
    "bcc": ADDRESS_LIST,
    "cc": ADDRESS_LIST,
    "comments": UNSTRUCTURED,
    "content-disposition": MIME_PARAMS,
    "content-id": MESSAGE_ID,
    "content-transfer-encoding": MIME_PARAMS,
    "content-type": MIME_PARAMS,
    "from": MAILBOX_LIST,
    "message-id": MESSAGE_ID,
    "mime-version": UNSTRUCTURED,
    "references": MESSAGE_ID_LIST,
    "reply-to": ADDRESS_LIST,
    "resent-bcc": ADDRESS_LIST,
    "resent-cc": ADDRESS_LIST,
    "resent-from": MAILBOX_LIST,
    "resent-sender": MAILBOX,
    "resent-to": ADDRESS_LIST,
    "sender": MAILBOX,
    "subject": UNSTRUCTURED,
    "to": ADDRESS_LIST,
}

_FACTORY = email.policy.default.header_factory
_ID = re.compile(r"<([^<>\s]+)>")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_PVALUE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]*@?[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 8601


def _read(name: str, text: str) -> Any:
    """The standard library's parse of a header value; ValueError when it cannot read it
    (its parser raises other errors on some hostile input)."""
    try:
        return _FACTORY(name, text)
    except (AttributeError, IndexError, TypeError, ValueError, email.errors.HeaderParseError):
        raise ValueError(f"cannot read {text!r} as a {name} header") from None


def kind_of(name: str) -> str:
    """The kind KumoMTA reads a header of this name as (`header.value`)."""
    return KIND_OF.get(name.lower(), UNSTRUCTURED)


def parse(kind: str, raw: bytes) -> Any:
    """The shape of `kind` read from a raw header value; ValueError when it does not fit."""
    reader: Callable[[bytes], Any] = _PARSERS[kind]
    return reader(raw)


def encode(kind: str, value: Any) -> str:
    """The header text of a shape (or of a string that reads as the shape)."""
    if isinstance(value, str):
        if kind != UNSTRUCTURED:
            parse(kind, value.encode())  # checked, written as given
        return value
    writer: Callable[[Any], str] = _WRITERS[kind]
    return writer(value)


# --- addresses -----------------------------------------------------------------------------


def address_list(raw: bytes) -> list[dict[str, Any]]:
    """Mailboxes and groups of an address-list header (From, To, Cc...)."""
    text = " ".join(raw.decode("utf-8", "replace").split())
    header = _read("To", text)
    defects = [d for d in header.defects if isinstance(d, email.errors.InvalidHeaderDefect)]
    if defects:
        raise ValueError(f"invalid address list {text!r}: {defects[0]}")
    entries: list[dict[str, Any]] = []
    for group in header.groups:
        mailboxes = [_mailbox_shape(address) for address in group.addresses]
        if group.display_name is None:
            entries.extend(mailboxes)
        else:
            entries.append({"name": group.display_name, "entries": mailboxes})
    return entries


def _mailbox_shape(address: email.headerregistry.Address) -> dict[str, Any]:
    if not address.username or not address.domain:
        raise ValueError(f"invalid address {address.addr_spec!r}")
    return {
        "name": address.display_name or None,
        "address": {"local_part": address.username, "domain": address.domain},
    }


def mailbox_list(raw: bytes) -> list[dict[str, Any]]:
    """The mailboxes of a mailbox-list header (From, Resent-From): no groups."""
    entries = address_list(raw)
    if any("entries" in entry for entry in entries):
        raise ValueError("a mailbox list holds no groups")
    return entries


def mailbox(raw: bytes) -> dict[str, Any]:
    """The one mailbox of a Sender header."""
    entries = mailbox_list(raw)
    if len(entries) != 1:
        raise ValueError(f"expected one mailbox, found {len(entries)}")
    return entries[0]


def addr_spec(local_part: str, domain: str) -> str:
    """`local@domain`, the local part quoted when it must be."""
    return email.headerregistry.Address(username=local_part, domain=domain).addr_spec


def mailbox_text(entry: dict[str, Any]) -> str:
    """One mailbox as header text: `Name <local@domain>` or `<local@domain>`."""
    address = entry.get("address")
    if not isinstance(address, dict):
        raise ValueError("a mailbox needs an address table {local_part, domain}")
    spec = addr_spec(str(address.get("local_part", "")), str(address.get("domain", "")))
    name = entry.get("name")
    if not name:
        return f"<{spec}>"
    return f"{_phrase(str(name))} <{spec}>"


def _phrase(name: str) -> str:
    if not name.isascii():
        return q_encode(name)
    if re.fullmatch(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+", name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _entry_text(entry: dict[str, Any]) -> str:
    if "entries" in entry:
        members = ", ".join(mailbox_text(m) for m in entry.get("entries") or [])
        return f"{_phrase(str(entry.get('name') or ''))}: {members};"
    return mailbox_text(entry)


def _list_text(value: Any) -> str:
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError("expected a list of addresses")
    return wrap(", ".join(_entry_text(entry) for entry in value))


# --- ids -----------------------------------------------------------------------------------


def message_id(raw: bytes) -> str:
    """The id of a Message-ID (Content-ID) header, without its angle brackets."""
    text = raw.decode("utf-8", "replace").strip()
    match = _ID.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a message id <id@domain>")
    return match.group(1)


def message_id_list(raw: bytes) -> list[str]:
    """The ids of a References header."""
    text = raw.decode("utf-8", "replace")
    ids = _ID.findall(text)
    if not ids or _ID.sub("", text).strip():
        raise ValueError(f"{' '.join(text.split())!r} is not a list of message ids")
    return ids


def _id_text(value: Any) -> str:
    text = str(value).strip()
    return text if text.startswith("<") else f"<{text}>"


def _ids_text(value: Any) -> str:
    if not isinstance(value, list):
        raise ValueError("expected a list of message ids")
    return wrap(" ".join(_id_text(item) for item in value))


# --- MIME parameters -----------------------------------------------------------------------


def mime_params(raw: bytes) -> dict[str, Any]:
    """`{value, parameters}` of a Content-Type-like header (RFC 2045, 2231)."""
    text = " ".join(raw.decode("utf-8", "replace").split())
    value, _, rest = text.partition(";")
    value = value.strip()
    if not value:
        raise ValueError(f"{text!r} has no value before its parameters")
    header = _read("Content-Disposition", f"x;{rest}") if rest.strip() else None
    parameters = dict(header.params) if header is not None else {}
    return {"value": value.lower(), "parameters": parameters}


def mime_params_text(value: Any) -> str:
    """`value;\\r\\n\\tname="param"` (KumoMTA's layout)."""
    if not isinstance(value, dict) or not isinstance(value.get("value"), str):
        raise ValueError("expected {value = 'type/subtype', parameters = {...}}")
    text = str(value["value"])
    for name, raw in sorted((value.get("parameters") or {}).items()):
        param = str(raw)
        if param.isascii():
            quoted = param.replace("\\", "\\\\").replace('"', '\\"')
            text += f';\r\n\t{name}="{quoted}"'
        else:
            text += f";\r\n\t{name}*=UTF-8''{urllib.parse.quote(param, safe='')}"
    return text


# --- Authentication-Results ----------------------------------------------------------------


def authentication_results(raw: bytes) -> dict[str, Any]:
    """An RFC 8601 Authentication-Results value: authserv-id, version, results."""
    text = re.sub(r"\([^()]*\)", " ", raw.decode("utf-8", "replace"))  # comments
    head, *infos = [part.strip() for part in text.split(";")]
    words = head.split()
    if not words:
        raise ValueError("Authentication-Results has no authserv-id")
    version = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
    results = [_resinfo(info) for info in infos if info and info.lower() != "none"]
    return {"serv_id": words[0], "version": version, "results": results}


def _resinfo(info: str) -> dict[str, Any]:
    tokens = re.findall(r'[^\s=]+\s*=\s*(?:"(?:[^"\\]|\\.)*"|[^\s]+)', info)
    if not tokens:
        raise ValueError(f"{info!r} is not method=result")
    method, result = (t.strip() for t in tokens[0].split("=", 1))
    name, _, version = method.partition("/")
    entry: dict[str, Any] = {
        "method": name,
        "method_version": int(version) if version.isdigit() else None,
        "result": _unquote(result),
        "reason": None,
        "props": {},
    }
    for token in tokens[1:]:
        key, value = (t.strip() for t in token.split("=", 1))
        if key.lower() == "reason":
            entry["reason"] = _unquote(value)
        else:
            entry["props"][key] = _unquote(value)
    return entry


def authentication_results_text(serv_id: str, results: list[dict[str, Any]]) -> str:
    """An Authentication-Results value (KumoMTA's layout: one result or property a line)."""
    text = _value_token(serv_id)
    if not results:
        return text + "; none"
    for result in results:
        unknown = set(result) - {"method", "method_version", "result", "reason", "props"}
        if unknown:
            raise ValueError(f"unknown field {sorted(unknown)[0]} in an authentication result")
        text += ";\r\n\t" + _value_token(str(result["method"]))
        if result.get("method_version") is not None:
            text += f"/{int(result['method_version'])}"
        text += "=" + _value_token(str(result["result"]))
        if result.get("reason") is not None:
            text += " reason=" + _value_token(str(result["reason"]))
        for key, value in sorted((result.get("props") or {}).items()):
            pvalue = str(value)
            text += f"\r\n\t{key}=" + (
                pvalue if _PVALUE.fullmatch(pvalue) else _value_token(pvalue)
            )
    return text


def _auth_results_text(value: Any) -> str:
    if not isinstance(value, dict):
        raise ValueError("expected {serv_id, results = {...}}")
    return authentication_results_text(str(value.get("serv_id", "")), value.get("results") or [])


def _value_token(text: str) -> str:
    if _TOKEN.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


_PARSERS: dict[str, Callable[[bytes], Any]] = {
    ADDRESS_LIST: address_list,
    AUTHENTICATION_RESULTS: authentication_results,
    MAILBOX: mailbox,
    MAILBOX_LIST: mailbox_list,
    MESSAGE_ID: message_id,
    MESSAGE_ID_LIST: message_id_list,
    MIME_PARAMS: mime_params,
    UNSTRUCTURED: decode_value,
}
_WRITERS: dict[str, Callable[[Any], str]] = {
    ADDRESS_LIST: _list_text,
    AUTHENTICATION_RESULTS: _auth_results_text,
    MAILBOX: mailbox_text,
    MAILBOX_LIST: _list_text,
    MESSAGE_ID: _id_text,
    MESSAGE_ID_LIST: _ids_text,
    MIME_PARAMS: mime_params_text,
    UNSTRUCTURED: str,
}
