"""What the commands read from their user: a message from a file or stdin, text options.

Rules: an input file that does not exist or cannot be read is NoInput (exit 66); a message
that is empty or holds NUL bytes is BadInput (exit 65); lines end with CRLF (files usually
end them with LF); an option's text must be UTF-8 (the command line gives undecodable bytes
as lone surrogates, which no log record or JSON file can hold).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import BinaryIO

from kumoclient.errors import BadInput, NoInput

STDIN = "-"
_BARE_LF = re.compile(rb"(?<!\r)\n")
_SURROGATE = re.compile("[\ud800-\udfff]")


def read_message(file: str, stdin: BinaryIO) -> bytes:
    """The message in `file`, or on stdin for `-`, with CRLF line ends."""
    try:
        content = stdin.read() if file == STDIN else Path(file).read_bytes()
    except OSError as exc:
        raise NoInput("stdin" if file == STDIN else file, exc.strerror or str(exc)) from exc
    if not content.strip():
        raise BadInput("the message is empty")
    if b"\x00" in content:
        raise BadInput("the message contains NUL bytes")
    content = _BARE_LF.sub(b"\r\n", content)  # files usually end lines with LF; SMTP needs CRLF
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    return content


def text_option(option: str, value: str) -> str:
    """`value` when it is text that can be stored and logged; BadInput naming `option`."""
    if _SURROGATE.search(value):
        raise BadInput(f"{option} {value!r}: not valid UTF-8")
    return value
