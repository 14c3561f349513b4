"""Property-based tests (hypothesis) of the message object's parsers on arbitrary input: a
message of any bytes is written back byte for byte by its MIME tree, its bodies decode or
raise ValueError (a Lua error), header values of any text read as their shape or raise
ValueError, and the conformance check and fix never fail otherwise."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kumoclient.policy.message import headers, structured
from kumoclient.policy.message.conformance import Issue, Settings, check_fix, issues
from kumoclient.policy.message.mime import Part

SETTINGS = settings(max_examples=400, deadline=None, database=None)
PIECES = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: text/plain; charset=iso-8859-1\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Disposition: attachment; filename*=UTF-8''%C3%A9\r\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"\r\n",
        b"\n",
        b"Subject : x\r\n",
        b"NoColon\r\n",
        b"  folded\r\n",
        b"=?UTF-8?q?caf=C3=A9?=",
        b"\xff\xfe\xc3",
        b"aGVsbG8=\r\n",
        b"caf=E9 =\r\n",
    ]
)
MESSAGES = st.lists(PIECES | st.binary(max_size=20), max_size=30).map(b"".join)
VALUES = st.text(alphabet="<>@\",;:()[]\\ .=?abcXé\r\n\t*'/", max_size=60)


@SETTINGS
@given(data=MESSAGES)
def test_any_message_round_trips_and_decodes_or_raises_value_error(data: bytes) -> None:
    tree = Part.parse(data)
    assert tree.to_bytes() == data
    for part in tree.walk():
        try:
            body = part.decoded()
        except ValueError:
            continue
        assert isinstance(body, str | bytes)
    found = issues(data)
    assert isinstance(found, Issue)
    try:  # msg:check_fix_conformance returns a ValueError's text, as KumoMTA its error's
        problem, fixed = check_fix(data, Issue(0), Issue(511), Settings(), "id@example.com")
    except ValueError:
        return
    assert problem is None
    if fixed is not None:
        assert Part.parse(fixed).to_bytes() == fixed


@SETTINGS
@given(value=VALUES, kind=st.sampled_from(structured.KINDS))
def test_any_header_text_reads_as_its_shape_or_raises_value_error(value: str, kind: str) -> None:
    try:
        shape = structured.parse(kind, value.encode())
    except ValueError:
        return
    if kind != structured.UNSTRUCTURED:
        text = structured.encode(kind, shape)
        assert structured.parse(kind, text.encode()) is not None


@SETTINGS
@given(value=st.text(max_size=300))
def test_an_encoded_value_decodes_back(value: str) -> None:
    """A header written with `encode = true` reads back as its text: exactly when it is not
    ASCII (RFC 2047 encoded words keep every character), its words when it is (wrapped at white
    space, as every header value is read)."""
    encoded = headers.encode_value(value)
    assert all(len(line) <= 900 for line in encoded.split("\r\n"))
    expected = " ".join(value.split()) if value.isascii() else value
    assert headers.decode_value(encoded.encode()) == expected
