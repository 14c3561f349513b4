"""Shared by the report tests: the sample files and a builder of small report messages."""

from __future__ import annotations

from pathlib import Path

REPORTS = Path(__file__).resolve().parents[1] / "data" / "reports"
SAMPLES = sorted(path.name for path in REPORTS.glob("*.eml"))


def sample(name: str) -> bytes:
    """The bytes of a file of tests/data/reports."""
    return (REPORTS / name).read_bytes()


def report(
    body: str | bytes,
    *,
    report_type: str | None = "delivery-status",
    part_type: str = "message/delivery-status",
    part_headers: str = "",
    original: str | bytes | None = None,
) -> bytes:
    """A `multipart/report` message with a human part, `body` as the part of `part_type` and,
    when given, `original` as a `message/rfc822` part."""
    kind = "" if report_type is None else f" report-type={report_type};"
    raw = body.encode() if isinstance(body, str) else body
    lines = [
        b"From: MAILER-DAEMON@mx.example.net",
        b"To: bounces@bounce.example.com",
        f"Content-Type: multipart/report;{kind} boundary=BOUNDARY".encode(),
        b"",
        b"--BOUNDARY",
        b"Content-Type: text/plain",
        b"",
        b"A human reading of the report.",
        b"--BOUNDARY",
        f"Content-Type: {part_type}".encode(),
        *([part_headers.encode()] if part_headers else []),
        b"",
        raw,
    ]
    if original is not None:
        text = original.encode() if isinstance(original, str) else original
        lines += [b"--BOUNDARY", b"Content-Type: message/rfc822", b"", text]
    return b"\n".join([*lines, b"--BOUNDARY--", b""])


PER_MESSAGE = "Reporting-MTA: dns; mx.example.net\n"
FAILED = (
    "Final-Recipient: rfc822; user@example.org\n"
    "Action: failed\n"
    "Status: 5.1.1\n"
    "Diagnostic-Code: smtp; 550 5.1.1 no such user\n"
)
