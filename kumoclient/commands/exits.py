"""The exit codes of kumoclient's commands (sysexits) and the one line printed for an error.

0 ok, 64 usage, 65 bad input data, 66 an input file missing or unreadable, 69 unavailable, 70
an internal error, 73 a directory that cannot be written, 75 temporary failure, 78
configuration error; 130 interrupted, 141 the reader of stdout went away.
"""

from __future__ import annotations

from kumoclient.errors import (
    AddressError,
    AdminRefused,
    AdminUnavailable,
    BadInput,
    CannotCreate,
    KumoClientError,
    NoInput,
    PolicyError,
    ReplyParseError,
    SpoolError,
    StartupError,
    UsageError,
)

EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_TEMPFAIL = 75
EX_CONFIG = 78
EX_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it
EX_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader went away (`kumoclient queue list | head`)

# the exit code of each error, the first that matches (subclasses before their bases)
EXIT_CODES: tuple[tuple[type[KumoClientError], int], ...] = (
    (UsageError, EX_USAGE),
    (PolicyError, EX_CONFIG),
    (AddressError, EX_DATAERR),
    (BadInput, EX_DATAERR),
    (ReplyParseError, EX_DATAERR),
    (NoInput, EX_NOINPUT),
    (StartupError, EX_UNAVAILABLE),
    (AdminUnavailable, EX_UNAVAILABLE),
    (CannotCreate, EX_CANTCREAT),
    (SpoolError, EX_TEMPFAIL),
    (KumoClientError, EX_CONFIG),
)


def exit_code(exc: KumoClientError) -> int:
    """The sysexits code of an error."""
    if isinstance(exc, AdminRefused):
        return EX_DATAERR if 400 <= exc.status < 500 else EX_UNAVAILABLE
    return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))


def error_line(exc: KumoClientError) -> str:
    """The one line printed for an error: a policy error as `file:line: message`."""
    if isinstance(exc, PolicyError):
        text = str(exc)
        if exc.location and not text.startswith(exc.location):
            return f"{exc.location}: {text}"
        return text
    return f"kumoclient: {exc}"
