"""SMTP replies: parsing reply lines, enhanced status codes, and the one-line forms.

Rules (SPEC 2.3 step 1, KumoMTA's ResponseBuilder):
- a reply line is `NNN-text` (continuation) or `NNN text` / `NNN` (last line); every line of a
  reply carries the same code;
- the first line's text may start with an enhanced code `X.Y.Z ` (X in 2, 4, 5); it is taken
  out of the text; a continuation line that repeats exactly that enhanced code loses it too;
- the one-line form is `<code> <enhanced> <text>` (the enhanced part only when present), the
  lines joined by CRLF, every line break then replaced by `line_break`: by default the literal
  four characters backslash-r backslash-n, or a space (KumoMTA >= 2024.06).
"""

from __future__ import annotations

import re

from kumoclient.errors import ReplyParseError
from kumoclient.records import EnhancedCode, Reply

LITERAL_CRLF = "\\r\\n"
SPACE = " "
LINE_BREAKS = (LITERAL_CRLF, SPACE)

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")
_LINE = re.compile(r"(\d{3})([ -]|$)(.*)", re.DOTALL)
_ANY_BREAK = re.compile(r"\r\n|\r|\n")


def parse_enhanced(text: str) -> tuple[EnhancedCode | None, str]:
    """Split a leading enhanced status code off `text`."""
    match = _ENHANCED.match(text)
    if match is None:
        return None, text
    code = EnhancedCode(int(match[1]), int(match[2]), int(match[3]))
    return code, text[match.end() :]


def parse_reply_lines(lines: list[str], command: str | None = None) -> Reply:
    """Build a Reply from the raw lines of one reply (without their CRLF)."""
    if not lines:
        raise ReplyParseError("empty reply")
    code: int | None = None
    enhanced: EnhancedCode | None = None
    texts: list[str] = []
    for index, line in enumerate(lines):
        match = _LINE.fullmatch(line)
        if match is None:
            raise ReplyParseError(f"malformed reply line {line!r}")
        line_code = int(match[1])
        last = index == len(lines) - 1
        if (match[2] == "-") == last:
            where = "the last line" if last else "a line before the last"
            raise ReplyParseError(f"continuation marker wrong on {where}: {line!r}")
        if code is None:
            code = line_code
            enhanced, text = parse_enhanced(match[3])
        else:
            if line_code != code:
                raise ReplyParseError(f"reply line {line!r} changes the code from {code}")
            text = match[3]
            if enhanced is not None and text.startswith(f"{enhanced} "):
                text = text[len(str(enhanced)) + 1 :]
        texts.append(text)
    assert code is not None
    return Reply(code, enhanced, "\n".join(texts), command)


def parse_one_line(text: str) -> Reply:
    """Parse an already single-line response such as `452 4.2.2 mailbox full`."""
    stripped = text.strip()
    match = _LINE.fullmatch(stripped)
    if match is None or match[2] == "-":
        raise ReplyParseError(
            f"not an SMTP reply: {text!r} (expected a 3-digit code, e.g. '452 4.2.2 text')"
        )
    enhanced, rest = parse_enhanced(match[3])
    return Reply(int(match[1]), enhanced, rest)


def single_line(reply: Reply, line_break: str = LITERAL_CRLF) -> str:
    """The one-line form handed to `smtp_client_rewrite_delivery_status`."""
    head = f"{reply.code} {reply.enhanced_code} " if reply.enhanced_code else f"{reply.code} "
    return head + flatten(reply.content, line_break)


def flatten(content: str, line_break: str = LITERAL_CRLF) -> str:
    """`content` with every CRLF, CR or LF replaced by `line_break`: never a line break."""
    if "\n" not in content and "\r" not in content:  # most replies: one line, nothing to do
        return content
    return _ANY_BREAK.sub(lambda _: line_break, content)  # a function: no escape processing


def rewrite_note(old: int, new: int) -> str:
    """The text KumoMTA appends to a rewritten reply."""
    return f" (kumomta: status was rewritten from {old} -> {new})"


def apply_rewrite(reply: Reply, new_code: int) -> Reply:
    """The reply with its code replaced and the note appended; enhanced code and command kept."""
    if new_code == reply.code:
        return reply
    # built directly: dataclasses.replace costs 3 µs, on the rewrite hook's hot path
    content = reply.content + rewrite_note(reply.code, new_code)
    return Reply(new_code, reply.enhanced_code, content, reply.command)


_NOTE = re.compile(r" \(kumomta: status was rewritten from (\d+) -> (\d+)\)$")


def strip_rewrite_note(content: str) -> tuple[str, int | None]:
    """`content` without a trailing rewrite note, and the code from before the rewrite."""
    match = _NOTE.search(content)
    if match is None:
        return content, None
    return content[: match.start()], int(match[1])
