"""The content half of the `msg` object: the message data, its headers, its MIME parts, its
conformance, the reports it may be (KumoMTA's `docs/reference/message/` pages; message.py
has the envelope, metadata and scheduling half).

Every method works on `self.content`, the bytes that are spooled when the event returns.
- `get_data()` / `set_data(bytes)`: the whole message (set_data takes it as given: CRLF line
  ends and transfer encoding are the policy's business, as in KumoMTA);
- `prepend_header` / `append_header(name, value, opt_encode)`: a new first / last header
  (headers.py: `encode` wraps or RFC 2047-encodes); `remove_all_named_headers(name)`,
  `remove_x_headers(opt_names)` (no names: every `X-` header; names: exactly those);
- `get_first_named_header_value(name)`, `get_all_named_header_values(name)`,
  `get_all_headers()` (`{{name, value}, ...}`): values decoded;
- `get_address_header(name)`, `from_header()`, `to_header()`: an AddressHeader or nil;
- `append_text_plain(text)`, `append_text_html(html)`: add to the first text/plain (after a
  CRLF) or text/html part (before `</body>`, else at its end), re-encoded; true when there
  was such a part;
- `parse_mime()`: a MimePart (mime_objects.py); `check_fix_conformance` (conformance.py);
- `parse_rfc3464()`, `parse_rfc5965()`: the DSN or ARF report as KumoMTA's table, nil
  when the message is not one, an error when it is a malformed one;
- `add_authentication_results(serv_id, results)`: a new first Authentication-Results header;
  `dkim_sign`, `dkim_verify`, `arc_verify`, `arc_seal`: refused with an error (kumoclient has
  no DKIM or ARC yet; signing or verifying silently nothing would change what receivers
  decide).
"""

from __future__ import annotations

from typing import Any

from kumoclient.core.arf_report import parse_arf
from kumoclient.core.dsn_report import dsn_json, parse_dsn
from kumoclient.core.log_record import encode_feedback_report
from kumoclient.errors import ConfigError
from kumoclient.policy.api import LuaObject
from kumoclient.policy.message import headers, structured
from kumoclient.policy.message.addresses import AddressHeader
from kumoclient.policy.message.conformance import Settings, check_fix, parse_issues
from kumoclient.policy.message.imports import ImportSpec, import_values
from kumoclient.policy.message.mime import Part
from kumoclient.policy.message.mime_objects import MimePart

CONTENT_METHODS = frozenset(
    {
        "get_data",
        "set_data",
        "prepend_header",
        "append_header",
        "remove_all_named_headers",
        "remove_x_headers",
        "get_first_named_header_value",
        "get_all_named_header_values",
        "get_all_headers",
        "get_address_header",
        "from_header",
        "to_header",
        "append_text_plain",
        "append_text_html",
        "parse_mime",
        "check_fix_conformance",
        "parse_rfc3464",
        "parse_rfc5965",
        "add_authentication_results",
        "dkim_sign",
        "dkim_verify",
        "arc_verify",
        "arc_seal",
    }
)
_NO_DKIM = "msg:{} is not available in kumoclient: it has no DKIM or ARC signing and verifying yet"


class MessageContent(LuaObject):
    """The content methods of the `msg` object (see the module's text)."""

    content: bytes
    meta: dict[str, Any]
    message_id: str
    envelope_sender: str

    # --- data and headers ------------------------------------------------------------------

    def get_data(self) -> bytes:
        """The whole message."""
        return self.content

    def set_data(self, data: str | bytes) -> None:
        """Replace the whole message."""
        if not isinstance(data, str | bytes):
            raise ConfigError("set_data: expected a string")
        self.content = data.encode() if isinstance(data, str) else data

    def prepend_header(self, name: str, value: str, encode: bool | None = None) -> None:
        """A new first header."""
        self.content = headers.prepend(self.content, str(name), _value(value, encode))

    def append_header(self, name: str, value: str, encode: bool | None = None) -> None:
        """A new last header."""
        self.content = headers.append(self.content, str(name), _value(value, encode))

    def remove_all_named_headers(self, name: str) -> None:
        """Remove every header named `name`."""
        self.content = headers.remove_named(self.content, str(name))

    def remove_x_headers(self, names: list[str] | None = None) -> None:
        """Remove every `X-` header, or the headers named in `names`."""
        wanted = {str(n).lower() for n in _names(names)}
        if wanted:
            self.content = headers.retain(self.content, lambda _, f: f.name.lower() not in wanted)
        else:
            self.content = headers.retain(
                self.content, lambda _, f: not f.name.lower().startswith("x-")
            )

    def get_first_named_header_value(self, name: str) -> str | None:
        """The first value of a header, decoded, or nil."""
        return next((f.value for f in self._fields() if f.matches(str(name))), None)

    def get_all_named_header_values(self, name: str) -> list[str]:
        """Every value of a header, decoded."""
        return [f.value for f in self._fields() if f.matches(str(name))]

    def get_all_headers(self) -> list[list[str]]:
        """`{{name, value}, ...}` for every header."""
        return [[f.name.strip(), f.value] for f in self._fields()]

    def get_address_header(self, name: str) -> AddressHeader | None:
        """The first header named `name` as an AddressHeader, or nil."""
        found = next((f for f in self._fields() if f.matches(str(name))), None)
        if found is None:
            return None
        try:
            return AddressHeader(structured.address_list(found.raw))
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None

    def from_header(self) -> AddressHeader | None:
        """`get_address_header('From')`."""
        return self.get_address_header("From")

    def to_header(self) -> AddressHeader | None:
        """`get_address_header('To')`."""
        return self.get_address_header("To")

    def _fields(self) -> list[headers.Field]:
        return headers.split(self.content)[0]

    def _import(self, specs: list[ImportSpec]) -> None:
        values, removed = import_values(self._fields(), specs)
        self.meta.update(values)
        if removed:
            self.content = headers.retain(self.content, lambda i, _: i not in removed)

    # --- the body and its parts ------------------------------------------------------------

    def append_text_plain(self, text: str) -> bool:
        """Add `text` to the first text/plain part; false when there is none."""
        return self._append_text("text", str(text))

    def append_text_html(self, html: str) -> bool:
        """Add `html` before `</body>` of the first text/html part; false when none."""
        return self._append_text("html", str(html))

    def _append_text(self, slot: str, addition: str) -> bool:
        tree = Part.parse(self.content)
        structure = MimePart(tree).get_simple_structure()
        handle = structure[f"{slot}_part"]
        if handle is None:
            return False
        part = handle.part
        body = part.decoded()
        if not isinstance(body, str):
            raise ConfigError(f"expected the text/{slot} part to be text, but it is binary")
        if slot == "text":
            body = body + "\r\n" + addition
        else:
            at = max(body.rfind("</body>"), body.rfind("</BODY>"))
            body = body + "\r\n" + addition if at < 0 else f"{body[:at]}\r\n{addition}{body[at:]}"
        part.replace_body(body, f"text/{'plain' if slot == 'text' else 'html'}")
        self.content = tree.to_bytes()
        return True

    def parse_mime(self) -> MimePart:
        """The message as a tree of MimeParts (edits apply only through set_data)."""
        return MimePart(Part.parse(self.content))

    def check_fix_conformance(self, checks: str, fixes: str, settings: Any = None) -> str | None:
        """nil, or the text of the issues CHECKS found; fixes FIXES (conformance.py)."""
        check, fix = parse_issues(str(checks)), parse_issues(str(fixes))
        domain = self.envelope_sender.rpartition("@")[2]
        try:
            problem, fixed = check_fix(
                self.content, check, fix, Settings.of(settings), f"{self.message_id}@{domain}"
            )
        except (ValueError, LookupError) as exc:  # KumoMTA answers any failure as its text
            return str(exc)
        if fixed is not None:
            self.content = fixed
        return problem

    def parse_rfc3464(self) -> dict[str, object] | None:
        """The RFC 3464 report this message is, or nil."""
        report = parse_dsn(self.content)
        return None if report is None else dsn_json(report)

    def parse_rfc5965(self) -> dict[str, object] | None:
        """The RFC 5965 feedback report this message is, or nil."""
        report = parse_arf(self.content)
        return None if report is None else encode_feedback_report(report)

    # --- authentication --------------------------------------------------------------------

    def add_authentication_results(self, serv_id: str, results: Any) -> None:
        """A new first `Authentication-Results:` header (RFC 8601)."""
        if not isinstance(results, list):
            results = [] if results in (None, {}) else [results]
        try:
            value = structured.authentication_results_text(str(serv_id), results)
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"add_authentication_results: {exc}") from None
        self.content = headers.prepend(self.content, "Authentication-Results", value)

    def dkim_sign(self, *args: Any) -> None:
        """Refused (see the module's text)."""
        raise ConfigError(_NO_DKIM.format("dkim_sign"))

    def dkim_verify(self, *args: Any) -> None:
        """Refused (see the module's text)."""
        raise ConfigError(_NO_DKIM.format("dkim_verify"))

    def arc_verify(self, *args: Any) -> None:
        """Refused (see the module's text)."""
        raise ConfigError(_NO_DKIM.format("arc_verify"))

    def arc_seal(self, *args: Any) -> None:
        """Refused (see the module's text)."""
        raise ConfigError(_NO_DKIM.format("arc_seal"))


def _value(value: Any, encode: bool | None) -> str:
    text = str(value) if not isinstance(value, bytes) else value.decode("utf-8", "replace")
    return headers.encode_value(text) if encode else text


def _names(names: Any) -> list[str]:
    if names is None or names == {}:
        return []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError("expected a list of header names")
    return names
