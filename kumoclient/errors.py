"""The one exception hierarchy of kumoclient; data lives in attributes, not in strings."""

from __future__ import annotations

from collections.abc import Mapping


class KumoClientError(Exception):
    """Base of every error kumoclient raises on purpose."""


class ConfigError(KumoClientError):
    """A configuration value is invalid (a `make_*` table, a duration, a command-line option).

    `key` names the offending key (or None when the whole value is wrong) and `value` is the
    value that was refused, so callers can build their own messages.
    """

    def __init__(self, message: str, *, key: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.key = key
        self.value = value


class DurationError(ConfigError):
    """A duration string or number could not be parsed."""


class PolicyError(KumoClientError):
    """The Lua policy failed: a load/syntax error, a runtime error in a handler, a bad result.

    `location` is `file:line` when known; `traceback` is the Lua traceback when there is one.
    """

    def __init__(
        self, message: str, *, location: str | None = None, traceback: str | None = None
    ) -> None:
        super().__init__(message)
        self.location = location
        self.traceback = traceback


class PolicyLoadError(PolicyError):
    """The policy file could not be read, compiled or run at the top level."""


class PolicyIoError(KumoClientError):
    """A `kumo` function's I/O failed: an HTTP request, a websocket, a Redis command, a sqlite
    statement. `function` names it as policy code calls it (`redis.query`), `reason` says what
    failed; the policy sees `function: reason` as a Lua error at its calling line."""

    def __init__(self, function: str, reason: str) -> None:
        super().__init__(f"{function}: {reason}")
        self.function = function
        self.reason = reason


class PolicyReject(KumoClientError):
    """A handler called `kumo.reject(code, text)`: the submission is refused with that reply.
    `disconnect` is `If421` (the SMTP session ends after a 421), or `kumo.disconnect`'s mode
    (`ForceDisconnect`, `FollowWith421`)."""

    def __init__(self, code: int, text: str, disconnect: str = "If421") -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text
        self.disconnect = disconnect


class ReplyParseError(KumoClientError):
    """An SMTP reply line does not have the `NNN text` shape."""


class QueueNameError(KumoClientError):
    """A queue name or its parts cannot be formatted or parsed."""


class SubmissionRefused(KumoClientError):
    """A submission is refused with an SMTP reply (`code`, `text` with its enhanced code)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


class ReceptionPaused(SubmissionRefused):
    """A submission is refused because kumoclient cannot take mail now (its delivery log
    cannot be written: SMTP `451 4.3.0`; the spool's disk is short of the free space the
    policy asks for: `451 4.3.1`), HTTP 503; nothing was stored."""


class LogUnavailable(KumoClientError):
    """Delivery log records cannot be made durable now (disk full, unwritable, I/O error);
    they are held in memory and written once the log can take them again (raised only by
    kumoclient.logs)."""


# --- the spool (raised only by kumoclient.spool) -----------------------------------------------


class SpoolError(KumoClientError):
    """The spool could not take, read, update or remove a message; `message_id` names the
    entry when one is concerned. The spool raises only this class and its subclasses: every
    OSError of the disk is translated at the spool's boundary."""

    def __init__(self, message: str, *, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message_id = message_id


class SpoolEntryMissing(SpoolError):
    """The entry is not in the spool (delivered and removed meanwhile, or never there)."""


class SpoolEntryCorrupt(SpoolError):
    """The entry exists but cannot be used as it is (bad format, checksum, values): it
    belongs in quarantine/."""


class SpoolUnavailable(SpoolError):
    """The spool cannot do its work now (disk full, I/O error, permissions, closed); trying
    again later may succeed. `errno` is the operating system's error number when known."""

    def __init__(
        self, message: str, *, message_id: str | None = None, errno: int | None = None
    ) -> None:
        super().__init__(message, message_id=message_id)
        self.errno = errno


# --- routing and delivery ------------------------------------------------------------------------


class DnsLookupError(KumoClientError):
    """A lookup gave no host to connect to (raised only by kumoclient.mx). `name` is the name
    looked up; `text` says what failed (`MX lookup for x failed: NXDOMAIN`)."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name
        self.text = text


class NullMx(DnsLookupError):
    """The domain publishes a null MX (RFC 7505): it accepts no mail (a Bounce)."""

    def __init__(self, domain: str) -> None:
        super().__init__(domain, "Recipient address has a null MX")
        self.domain = domain


class DnsTemporaryFailure(DnsLookupError):
    """NXDOMAIN, SERVFAIL, a timeout, no usable nameserver (a TransientFailure). `rdtype` is
    what was asked (`MX`, `A/AAAA`), `reason` the short cause (`NXDOMAIN`)."""

    def __init__(self, name: str, reason: str, rdtype: str = "MX") -> None:
        super().__init__(name, f"{rdtype} lookup for {name} failed: {reason}")
        self.rdtype = rdtype
        self.reason = reason


class ConnectFailure(KumoClientError):
    """One target could not be used (raised only by kumoclient.smtp): `where` names it,
    `phase` is connect, banner, ehlo, helo or starttls, `reason` what went wrong."""

    def __init__(self, where: str, phase: str, reason: str) -> None:
        super().__init__(f"{where}: {phase}: {reason}")
        self.where = where
        self.phase = phase
        self.reason = reason


class EngineStopped(KumoClientError):
    """The engine stopped before the awaited message reached a final disposition."""


class LogRecordError(KumoClientError):
    """A log record (a JSON line) does not have the shape of SPEC 6; the message says which
    field is wrong."""


# --- envelope addresses (core/address.py) --------------------------------------------------


class AddressError(KumoClientError):
    """An envelope address that cannot be one: `address` as given, `reason` in words
    (`it contains CR, LF, NUL or another control character`, `expected local-part@domain`)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"invalid address {address!r}: {reason}")
        self.address = address
        self.reason = reason


# --- the SMTP listener (core/smtp_server.py) -----------------------------------------------


class CommandError(KumoClientError):
    """An SMTP command that gets an error reply; `reply` is the whole reply line. `disconnect`
    says whether the session ends after it: `If421` (when the code is 421), `ForceDisconnect`,
    or `FollowWith421` (a 421 follows, then the end), as `kumo.disconnect` asks."""

    def __init__(self, reply: str, disconnect: str = "If421") -> None:
        super().__init__(reply)
        self.reply = reply
        self.disconnect = disconnect


# --- command line and HTTP ----------------------------------------------------------------


class UsageError(KumoClientError):
    """Bad command-line usage: an unknown option, a missing or malformed value (exit 64)."""


class BadInput(KumoClientError):
    """Input data that cannot be accepted: an address, a message, a log record (exit 65)."""


class NoInput(KumoClientError):
    """An input file that does not exist or cannot be read (exit 66); `path`, `reason`."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")
        self.path = path
        self.reason = reason


class CannotCreate(KumoClientError):
    """A directory kumoclient writes to cannot be created or written (exit 73); `path`,
    `reason`."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot write to {path}: {reason}")
        self.path = path
        self.reason = reason


class StartupError(KumoClientError):
    """The daemon cannot start: a listen address in use or not available (exit 69)."""


class AdminUnavailable(KumoClientError):
    """The daemon's HTTP listener could not be reached, or what answered is not one (exit 69);
    `url`, `reason`."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach the daemon at {url}: {reason}")
        self.url = url
        self.reason = reason


class AdminRefused(KumoClientError):
    """The daemon answered an admin call with an error: `status`, its `message` (exit 65 for
    4xx, 69 otherwise)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the daemon refused: {status} {message}")
        self.status = status
        self.message = message


class BadInjectRequest(KumoClientError):
    """An inject API request that cannot be accepted as it is; the message names the field
    (HTTP 400)."""


class HttpError(KumoClientError):
    """An HTTP answer other than 200: `status`, the `message` of the JSON body, extra
    `headers`."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


# --- inbound reports (core/dsn_report.py, core/arf_report.py) ----------------------------


class ReportError(KumoClientError):
    """A message whose Content-Type says it is a delivery status report (RFC 3464) or a
    feedback report (RFC 5965) but that cannot be read as one: its status part is missing, a
    required field is absent or repeated, or a value does not have its syntax. `report` is
    `delivery-status` or `feedback-report`; `field` names the field at fault (lower case; None
    when the fault is the message's structure); `reason` says what is wrong."""

    def __init__(self, report: str, reason: str, *, field: str | None = None) -> None:
        where = f"{field}: " if field else ""
        super().__init__(f"malformed {report} report: {where}{reason}")
        self.report = report
        self.field = field
        self.reason = reason
