"""A message as a tree of MIME parts (RFC 2045/2046), kept as bytes so that an untouched part is
written back exactly as it came; decoded bodies; new and rebuilt parts.

A part is its header block, the empty line, and either a body (a leaf) or, for `multipart/*`
with a boundary, the preamble, each child between its delimiter lines, the close delimiter and
the epilogue. As in KumoMTA, a child's bytes run up to the next delimiter line, so the line
end before a delimiter belongs to the child's body (`part.body` ends with it). Writing a part
writes those bytes; a child added (`append_part`) is written with a `--boundary` line before
it. A part's id is its position when parsed: `""` for the root,
`"0"` for its first child, `"1.0"` for the first child of the second.

Bodies (KumoMTA's rules): the transfer encoding (base64, quoted-printable, 7bit, 8bit,
binary; another value counts as 7bit) is undone; a text part (`text/*`, or a part with no
Content-Type) is then decoded with its charset (us-ascii when none); text that does not decode
with it is taken as UTF-8 when it is, else it is binary. Replacing a text body writes it with
`charset="us-ascii"` or `"utf-8"`, quoted-printable (or nothing, when it needs no encoding;
base64 when that is shorter), CRLF line ends; a binary body is written in base64 (RFC 2045 line
length). The Content-Type and Content-Transfer-Encoding headers are replaced, others kept.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass, field
from typing import Any

from kumoclient.policy.message import structured
from kumoclient.policy.message.headers import Field, field_bytes, retain, split

_LINE = re.compile(rb"[^\n]*(?:\n|$)")
CRLF = b"\r\n"


@dataclass(frozen=True, slots=True)
class Rfc2045:
    """What a part's headers say about its body."""

    content_type: str | None  # lower-case `type/subtype`, None when absent or unreadable
    parameters: dict[str, str]
    encoding: str  # lower-case transfer encoding
    disposition: str | None
    file_name: str | None
    content_id: str | None

    @property
    def is_text(self) -> bool:
        return self.content_type is None or self.content_type.startswith("text/")

    @property
    def is_multipart(self) -> bool:
        return self.content_type is not None and self.content_type.startswith("multipart/")

    @property
    def charset(self) -> str:
        return self.parameters.get("charset", "us-ascii")

    @property
    def attachment(self) -> bool:
        """KumoMTA's attachment options: an inline disposition, a file name or a content id."""
        inline = self.disposition == "inline"
        return inline or self.file_name is not None or self.content_id is not None


@dataclass(eq=False)
class Part:
    """One MIME part (see the module's text)."""

    head: bytes  # the header fields, each with its line end
    sep: bytes = CRLF  # the empty line after them (b"" when the part has none)
    body: bytes = b""  # a leaf's raw body
    parts: list[Part] = field(default_factory=list)
    preamble: bytes = b""
    leads: list[bytes] = field(default_factory=list)  # each child's delimiter line
    closing: bytes = b""  # the close delimiter line
    epilogue: bytes = b""
    pid: str = ""

    # --- reading --------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes, pid: str = "") -> Part:
        """The tree of parts of `data`."""
        fields, offset = split(data)
        head = data[: fields[-1].end] if fields else b""
        part = cls(head, data[len(head) : offset], data[offset:], pid=pid)
        info = part.info()
        boundary = info.parameters.get("boundary")
        if info.is_multipart and boundary:
            part._split_children(boundary.encode("utf-8", "replace"))
        return part

    def _split_children(self, boundary: bytes) -> None:
        delimiter, body = b"--" + boundary, self.body
        starts: list[tuple[int, int, bool]] = []  # (line start, line end, closing)
        for match in _LINE.finditer(body):
            line = match.group().rstrip(b"\r\n").rstrip(b" \t")
            if line == delimiter or line == delimiter + b"--":
                starts.append((match.start(), match.end(), line != delimiter))
                if line != delimiter:
                    break
            if match.end() == len(body):
                break
        if not starts or starts[0][2]:
            return  # no child: a leaf after all
        self.preamble = body[: starts[0][0]]
        for index, (start, lead_end, closing) in enumerate(starts):
            if closing:
                self.closing = body[start:lead_end]
                self.epilogue = body[lead_end:]
                break
            end = starts[index + 1][0] if index + 1 < len(starts) else len(body)
            self.leads.append(body[start:lead_end])
            pid = str(index) if not self.pid else f"{self.pid}.{index}"
            self.parts.append(Part.parse(body[lead_end:end], pid))
        self.body = b""

    def fields(self) -> list[Field]:
        """The header fields."""
        return split(self.head + CRLF)[0]

    def first(self, name: str) -> Field | None:
        """The first header field named `name`."""
        return next((f for f in self.fields() if f.matches(name)), None)

    def info(self) -> Rfc2045:
        """What the headers say about the body (unreadable headers count as absent)."""
        content_type, parameters = _params(self.first("Content-Type"))
        encoding, _ = _params(self.first("Content-Transfer-Encoding"))
        disposition, disposition_params = _params(self.first("Content-Disposition"))
        file_name = disposition_params.get("filename") or parameters.get("name")
        cid = self.first("Content-ID")
        content_id = None
        if cid is not None:
            try:
                content_id = structured.message_id(cid.raw)
            except ValueError:
                content_id = None
        return Rfc2045(
            content_type, parameters, encoding or "7bit", disposition, file_name, content_id
        )

    def raw_decoded(self) -> bytes:
        """The body with its transfer encoding undone (ValueError when it cannot be)."""
        encoding = self.info().encoding
        if encoding == "base64":
            try:
                return base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", self.body) + b"==")
            except binascii.Error as exc:
                raise ValueError(f"base64 decode: {exc}") from None
        if encoding == "quoted-printable":
            return binascii.a2b_qp(self.body)
        return self.body

    def decoded(self) -> str | bytes:
        """The body: text (`str`) for a text part that decodes, else bytes (module's rules)."""
        info, data = self.info(), self.raw_decoded()
        if not info.is_text:
            return data
        text = decode_text(data, info.charset)
        return data if text is None else text

    # --- writing --------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The part as RFC 5322 text."""
        out = [self.head, self.sep]
        if not self.parts:
            out.append(self.body)
            return b"".join(out)
        out.append(self.preamble)
        for lead, child in zip(self.leads, self.parts, strict=True):
            out += [lead, child.to_bytes()]
            if not out[-1].endswith(b"\n") and (self.closing or child is not self.parts[-1]):
                out.append(CRLF)  # the delimiter that follows starts a line
        out += [self.closing, self.epilogue]
        return b"".join(out)

    def set_head(self, head: bytes) -> None:
        """New header fields (each with its line end)."""
        self.head = head
        if not self.sep:
            self.sep = CRLF

    def remove_all(self, name: str) -> None:
        """Drop every header field named `name`."""
        self.set_head(retain(self.head + CRLF, lambda _, f: not f.matches(name))[: -len(CRLF)])

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """A new header field, at the end (or at the start)."""
        line = field_bytes(name, value)
        self.set_head(line + self.head if first else self.head + line)

    def append_part(self, child: Part) -> None:
        """A new last child (this part must be multipart with a boundary)."""
        boundary = self.info().parameters.get("boundary")
        if not self.info().is_multipart or not boundary:
            raise ValueError("append_part: this part is not multipart with a boundary")
        if not self.parts:
            self.body = b""
        self.leads.append(b"--" + boundary.encode() + CRLF)
        self.parts.append(child)
        if not self.closing:
            self.closing = b"--" + boundary.encode() + b"--" + CRLF

    def replace_body(self, content: str | bytes, content_type: str | None = None) -> None:
        """A new body (text or binary), transfer-encoded; the content type kept unless given."""
        if content_type is None:
            content_type = self.info().content_type
        new = (
            new_text(content_type or "text/plain", content)
            if isinstance(content, str)
            else new_binary(content_type or "application/octet-stream", content)
        )
        self.remove_all("Content-Type")
        self.remove_all("Content-Transfer-Encoding")
        self.set_head(self.head + new.head)
        self.body, self.parts, self.leads = new.body, [], []
        self.preamble = self.closing = self.epilogue = b""

    def walk(self) -> list[Part]:
        """This part and every part below it, depth first."""
        found = [self]
        for child in self.parts:
            found += child.walk()
        return found


def decode_text(data: bytes, charset: str) -> str | None:
    """`data` decoded with `charset`, else as UTF-8; None when neither works."""
    try:
        return data.decode(_codec(charset))
    except (LookupError, UnicodeDecodeError):
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _codec(charset: str) -> str:
    name = charset.strip().lower()
    return "ascii" if name in ("us-ascii", "ascii", "ansi_x3.4-1968") else codecs.lookup(name).name


def _params(found: Field | None) -> tuple[str | None, dict[str, str]]:
    if found is None:
        return None, {}
    try:
        shape = structured.mime_params(found.raw)
    except ValueError:
        return None, {}
    return shape["value"], {k.lower(): str(v) for k, v in shape["parameters"].items()}


# --- new parts -----------------------------------------------------------------------------


def new_text(content_type: str, text: str) -> Part:
    """A text part: quoted-printable unless it needs no encoding (base64 when shorter)."""
    data = re.sub(r"\r\n|\r|\n", "\r\n", text).encode()
    qp = binascii.b2a_qp(data, istext=True)
    b64 = base64.encodebytes(data).replace(b"\n", CRLF)
    charset = "us-ascii" if data.isascii() else "utf-8"
    params = {"value": content_type, "parameters": {"charset": charset}}
    head = field_bytes("Content-Type", structured.mime_params_text(params))
    if qp == data:
        body = data
    elif len(qp) <= len(b64):
        body = qp
        head += field_bytes("Content-Transfer-Encoding", "quoted-printable")
    else:
        body = b64
        head += field_bytes("Content-Transfer-Encoding", "base64")
    if not body.endswith(CRLF):
        body += CRLF
    return Part(head, CRLF, body)


def new_binary(content_type: str, data: bytes, attachment: dict[str, Any] | None = None) -> Part:
    """A base64 part; `attachment` `{file_name, inline, content_id}` adds its disposition."""
    params: dict[str, Any] = {"value": content_type, "parameters": {}}
    head = b""
    if attachment is not None:
        disposition: dict[str, Any] = {
            "value": "inline" if attachment.get("inline") else "attachment",
            "parameters": {},
        }
        if attachment.get("file_name"):
            disposition["parameters"]["filename"] = attachment["file_name"]
            params["parameters"]["name"] = attachment["file_name"]
        head += field_bytes("Content-Disposition", structured.mime_params_text(disposition))
        if attachment.get("content_id"):
            head += field_bytes("Content-ID", f"<{attachment['content_id']}>")
    head = field_bytes("Content-Type", structured.mime_params_text(params)) + head
    head += field_bytes("Content-Transfer-Encoding", "base64")
    body = base64.encodebytes(data).replace(b"\n", CRLF)
    return Part(head, CRLF, body or CRLF)


def new_multipart(content_type: str, children: list[Part], boundary: str) -> Part:
    """A multipart part holding `children`."""
    params = {"value": content_type, "parameters": {"boundary": boundary}}
    part = Part(field_bytes("Content-Type", structured.mime_params_text(params)), CRLF)
    for child in children:
        part.append_part(child)
    return part
