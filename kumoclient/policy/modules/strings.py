"""`kumo.string.*`: splitting, trimming and replacing as Rust's `str` does them, prefix and
suffix tests, Public Suffix List lookups, header folding (`wrap`) and `eval_template`."""

from __future__ import annotations

import json
import re
from typing import Any

import jinja2
from publicsuffixlist import PublicSuffixList

from kumoclient.core.template import OverLimit, Sandbox, render_bounded
from kumoclient.errors import ConfigError
from kumoclient.policy.api import kumo_function
from kumoclient.policy.modules import args

# Unicode's White_Space property (Rust's char::is_whitespace; Python's str.isspace also takes
# U+001C..U+001F, which are not whitespace here)
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_WHITE_RUN = re.compile(f"[{WHITE_SPACE}]+")
_ASCII_WHITE_RUN = re.compile(b"[ \t\n\x0c\r]+")


def _split(text: str, pattern: str) -> list[str]:
    if pattern == "":  # Rust: an empty pattern matches at every character boundary
        return ["", *text, ""]
    return text.split(pattern)


@kumo_function("string.split")
def split(value: Any, pattern: Any) -> list[str]:
    what = "kumo.string.split"
    return _split(args.text(what, value), args.text(what, pattern, name="pattern"))


@kumo_function("string.rsplit")
def rsplit(value: Any, pattern: Any) -> list[str]:
    """The pieces of `split`, last first (the matches are found from the end)."""
    what = "kumo.string.rsplit"
    text, sep = args.text(what, value), args.text(what, pattern, name="pattern")
    pieces = ["", *text, ""] if sep == "" else text.rsplit(sep)
    return pieces[::-1]


def _limit(what: str, value: Any) -> int:
    return args.integer(what, value, name="limit", minimum=0)


@kumo_function("string.splitn")
def splitn(value: Any, limit: Any, pattern: Any) -> list[str]:
    """At most `limit` pieces, the last one holding the rest."""
    what = "kumo.string.splitn"
    text, count = args.text(what, value), _limit(what, limit)
    sep = args.text(what, pattern, name="pattern")
    if count == 0:
        return []
    if sep == "":
        pieces = _split(text, sep)
        return [*pieces[: count - 1], "".join(pieces[count - 1 :])]
    return text.split(sep, count - 1)


@kumo_function("string.rsplitn")
def rsplitn(value: Any, limit: Any, pattern: Any) -> list[str]:
    """At most `limit` pieces from the end, the last one holding the rest."""
    what = "kumo.string.rsplitn"
    text, count = args.text(what, value), _limit(what, limit)
    sep = args.text(what, pattern, name="pattern")
    if count == 0:
        return []
    if sep == "":
        pieces = _split(text, sep)[::-1]
        return [*pieces[: count - 1], "".join(reversed(pieces[count - 1 :]))]
    return text.rsplit(sep, count - 1)[::-1]


@kumo_function("string.split_whitespace")
def split_whitespace(value: Any) -> list[str]:
    return [p for p in _WHITE_RUN.split(args.text("kumo.string.split_whitespace", value)) if p]


@kumo_function("string.split_ascii_whitespace")
def split_ascii_whitespace(value: Any) -> list[str]:
    text = args.text("kumo.string.split_ascii_whitespace", value)
    return [p for p in re.split("[ \t\n\x0c\r]+", text) if p]


@kumo_function("string.trim")
def trim(value: Any) -> str:
    return args.text("kumo.string.trim", value).strip(WHITE_SPACE)


@kumo_function("string.trim_start")
def trim_start(value: Any) -> str:
    return args.text("kumo.string.trim_start", value).lstrip(WHITE_SPACE)


@kumo_function("string.trim_end")
def trim_end(value: Any) -> str:
    return args.text("kumo.string.trim_end", value).rstrip(WHITE_SPACE)


@kumo_function("string.replace")
def replace(value: Any, old: Any, new: Any) -> str:
    what = "kumo.string.replace"
    return args.text(what, value).replace(args.text(what, old), args.text(what, new))


@kumo_function("string.replacen")
def replacen(value: Any, old: Any, new: Any, count: Any) -> str:
    what = "kumo.string.replacen"
    limit = args.integer(what, count, name="count", minimum=0)
    return args.text(what, value).replace(args.text(what, old), args.text(what, new), limit)


@kumo_function("string.starts_with")
def starts_with(value: Any, prefix: Any) -> bool:
    """A plain byte comparison (binary strings allowed)."""
    what = "kumo.string.starts_with"
    return args.data(what, value).startswith(args.data(what, prefix))


@kumo_function("string.ends_with")
def ends_with(value: Any, suffix: Any) -> bool:
    what = "kumo.string.ends_with"
    return args.data(what, value).endswith(args.data(what, suffix))


_PSL = PublicSuffixList()  # Mozilla's list, ICANN and private sections


def _domain(what: str, value: Any) -> str:
    text = args.text(what, value)
    text = text[:-1] if text.endswith(".") else text
    return text.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@kumo_function("string.psl_domain")
def psl_domain(value: Any) -> str | None:
    """The registrable domain (`www.example.com` → `example.com`), nil when there is none."""
    domain = _domain("kumo.string.psl_domain", value)
    return _PSL.privatesuffix(domain) if domain else None


@kumo_function("string.psl_suffix")
def psl_suffix(value: Any) -> str | None:
    """The public suffix (`www.example.com` → `com`)."""
    domain = _domain("kumo.string.psl_suffix", value)
    return _PSL.publicsuffix(domain) if domain else None


@kumo_function("string.wrap")
def wrap(value: Any, soft: Any = None, hard: Any = None) -> bytes:
    """Words (split on ASCII whitespace) joined by spaces into lines shorter than `soft` bytes
    where possible; a word longer than `hard` is cut every `hard` bytes. Lines after the first
    start with a tab; breaks are CRLF."""
    what = "kumo.string.wrap"
    text = args.data(what, value)
    soft_limit = 75 if soft is None else args.integer(what, soft, name="soft limit", minimum=0)
    hard_limit = 900 if hard is None else args.integer(what, hard, name="hard limit", minimum=1)
    lines: list[bytes] = []
    line = b""
    for word in _ASCII_WHITE_RUN.split(text):
        if not word:
            continue
        if len(line) + len(word) < soft_limit:
            line = line + b" " + word if line else word
            continue
        if line:
            lines.append(line)
        line = b""
        if len(word) <= hard_limit:
            line = word
            continue
        chunks = [word[i : i + hard_limit] for i in range(0, len(word), hard_limit)]
        if len(chunks[-1]) == hard_limit:
            lines.extend(chunks)
        else:
            lines.extend(chunks[:-1])
            line = chunks[-1]
    if line:
        lines.append(line)
    wrapped = b"\r\n\t".join(lines)
    return (
        wrapped.decode("utf-8", "surrogateescape")
        .rstrip(WHITE_SPACE)
        .encode("utf-8", "surrogateescape")
    )


# --- templates ------------------------------------------------------------------------------

_HTML_NAMES = ("html", "htm", "xml")
_JSON_NAMES = ("json", "json5", "js", "yaml", "yml")


def _json_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


_PLAIN = Sandbox(html=False)
_HTML = Sandbox(html=True)
_JSON = Sandbox(html=False, finalize=_json_value)


def _environment(name: str) -> Sandbox:
    """Escaping by the name's extension, as minijinja picks it (`.j2` and `.jinja` looked past)."""
    parts = name.lower().split(".")
    while len(parts) > 1 and parts[-1] in ("j2", "jinja", "jinja2"):
        parts.pop()
    extension = parts[-1] if len(parts) > 1 else ""
    if extension in _HTML_NAMES:
        return _HTML
    if extension in _JSON_NAMES:
        return _JSON
    return _PLAIN


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


@kumo_function("string.eval_template")
def eval_template(name: Any, source: Any, context: Any = None, dialect: Any = None) -> str:
    """Render `source` as a Jinja template (KumoMTA's default dialect) or return it as it is
    (`Static`); the Handlebars dialect is not available here."""
    what = "kumo.string.eval_template"
    template_name = args.text(what, name, name="name")
    text = args.text(what, source, name="source")
    kind = args.optional_text(what, dialect, "Jinja", name="dialect")
    if kind == "Static":
        return text
    if kind != "Jinja":
        raise ConfigError(f"{what}: dialect {kind!r} is not supported (Jinja or Static)")
    variables = _sorted(context) if isinstance(context, dict) else {}
    try:
        return render_bounded(_environment(template_name).from_source(text), variables)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"{what}: {template_name}:{exc.lineno}: {exc.message}") from exc
    except OverLimit as exc:
        raise ConfigError(f"{what}: {template_name}: template stopped: {exc}") from exc
    except Exception as exc:  # whatever a template raises is the template's problem
        raise ConfigError(f"{what}: {template_name}: {type(exc).__name__}: {exc}") from exc
