"""The one exception hierarchy of kumoclient; data lives in attributes, not in strings."""

from __future__ import annotations


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


class PolicyReject(KumoClientError):
    """A handler called `kumo.reject(code, text)`: the submission is refused with that reply."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} {text}")
        self.code = code
        self.text = text


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
