"""The `msg` object of KumoMTA's policy API, handed to reception events
(`smtp_server_message_received`, `http_message_generated`, and the other listener events):
envelope, metadata, scheduling (this module) and content (content.py).

Interface for callers (reception, the listener): `MessageView(message_id, sender, recipient,
content, meta)` — `recipient` one address or a list of them, `meta` a dict the view edits in
place; after the event, read `envelope_sender`, `recipients`, `content`, `meta`, `schedule`
(a records.Schedule or None), `due` (Unix seconds or None: as soon as possible) and
`attempts` (`sender()` and `recipient()` are the Lua methods). Fire an event with
`PolicyRuntime.message_event(event, view, *args)`.

Methods (KumoMTA's names and results; docs/message.md lists them all):
- `id()`; `sender()` and `recipient()` as EnvelopeAddress objects (`recipient()` is a list
  when the message has several recipients), `recipient_list()`, `set_sender(addr)`,
  `set_recipient(addr or list)` (a string, with or without angle brackets, or an
  EnvelopeAddress);
- `get_meta(key)`, `set_meta(key, value)`: any JSON value (strings, numbers, booleans,
  tables, nested); `queue`, `tenant`, `campaign`, `routing_domain` must be strings (or nil)
  since they name the queue; `import_x_headers(opt_names)`, `import_headers(specs)`
  (imports.py);
- `queue_name()`: the queue the message would go to; `num_attempts()` (0 at reception),
  `increment_num_attempts()`;
- `set_scheduling(sched or nil)`, `import_scheduling_header(name, remove)`: delivery
  windows, first attempt and expiry (core.schedule), returning the schedule's table;
  `set_due(time or nil)`: the first attempt's time (RFC 3339), moved into the schedule,
  returned as RFC 3339 UTC (nil: as soon as possible);
- accepted with no effect: `save()` (the message is spooled durably when the event
  returns), `set_force_sync(bool)` (every spool write is durable), `shrink()`,
  `shrink_data()` (return false: nothing is released while the event runs).
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

from kumoclient.core.meta import check_value
from kumoclient.core.queue_name import check_reserved, queue_name_for
from kumoclient.core.schedule import (
    next_allowed,
    parse_rfc3339,
    parse_schedule,
    schedule_json,
    utc_text,
)
from kumoclient.errors import ConfigError, QueueNameError
from kumoclient.policy.message.addresses import EnvelopeAddress
from kumoclient.policy.message.content import CONTENT_METHODS, MessageContent
from kumoclient.policy.message.imports import compile_specs, x_header_specs
from kumoclient.records import Schedule

ENVELOPE_METHODS = frozenset(
    {
        "id",
        "sender",
        "set_sender",
        "recipient",
        "recipient_list",
        "set_recipient",
        "get_meta",
        "set_meta",
        "import_x_headers",
        "import_headers",
        "queue_name",
        "num_attempts",
        "increment_num_attempts",
        "set_scheduling",
        "import_scheduling_header",
        "set_due",
        "save",
        "set_force_sync",
        "shrink",
        "shrink_data",
    }
)


class MessageView(MessageContent):
    """One message under policy control (see the module's text)."""

    lua_name: ClassVar[str] = "Message"
    lua_cached: ClassVar[bool] = False  # made per event: not kept alive
    lua_methods: ClassVar[frozenset[str]] = ENVELOPE_METHODS | CONTENT_METHODS

    def __init__(
        self,
        message_id: str,
        sender: str,
        recipient: str | list[str],
        content: bytes,
        meta: dict[str, Any],
    ) -> None:
        self.message_id = message_id
        self.envelope_sender = sender
        self.recipients = [recipient] if isinstance(recipient, str) else list(recipient)
        self.content = content
        self.meta = meta
        self.schedule: Schedule | None = None
        self.due: float | None = None
        self.attempts = 0

    # --- envelope ------------------------------------------------------------------------

    def id(self) -> str:
        """The message id (32 hex digits)."""
        return self.message_id

    def sender(self) -> EnvelopeAddress:
        """The envelope sender."""
        return EnvelopeAddress(self.envelope_sender)

    def set_sender(self, address: Any) -> None:
        """Replace the envelope sender (a string or an EnvelopeAddress)."""
        self.envelope_sender = EnvelopeAddress.parse(address, sender=True).text

    def recipient(self) -> EnvelopeAddress | list[EnvelopeAddress] | None:
        """The recipient; a list of them when there are several (KumoMTA's batches)."""
        found = self.recipient_list()
        if len(found) > 1:
            return found
        return found[0] if found else None

    def recipient_list(self) -> list[EnvelopeAddress]:
        """Every recipient as an EnvelopeAddress."""
        return [EnvelopeAddress(r) for r in self.recipients]

    def set_recipient(self, value: Any) -> None:
        """Replace the recipients: one address, or a list of them."""
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ConfigError("set_recipient: a message needs at least one recipient")
        self.recipients = [EnvelopeAddress.parse(v).text for v in values]

    # --- metadata ------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        """A meta value, or nil."""
        return self.meta.get(str(key))

    def set_meta(self, key: str, value: Any) -> None:
        """Set a meta value: any JSON value (a reserved key takes a string or nil)."""
        if not isinstance(key, str):
            raise ConfigError("meta keys are strings")
        try:
            checked = check_value(value, f"meta {key!r}")
            check_reserved({key: checked})
        except (ValueError, QueueNameError) as exc:
            raise ConfigError(str(exc)) from None
        self.meta[key] = checked

    def import_x_headers(self, names: Any = None) -> None:
        """Every `X-` header (or the named ones) into meta, as `x_campaign_id`."""
        if names is not None and names != {} and not isinstance(names, list):
            raise ConfigError("import_x_headers: expected a list of header names")
        self._import(x_header_specs([str(n) for n in names] if isinstance(names, list) else None))

    def import_headers(self, specs: Any) -> None:
        """Headers into meta by specs (imports.py)."""
        try:
            compiled = compile_specs([] if specs == {} else specs)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self._import(compiled)

    # --- queue and attempts ------------------------------------------------------------------

    def queue_name(self) -> str:
        """The scheduled queue the message goes to."""
        return queue_name_for(self.recipients[0], self.meta)

    def num_attempts(self) -> int:
        """The delivery attempts made so far (0 at reception)."""
        return self.attempts

    def increment_num_attempts(self) -> None:
        """Count one more attempt."""
        self.attempts += 1

    # --- scheduling --------------------------------------------------------------------------

    def set_scheduling(self, value: Any) -> dict[str, str] | None:
        """Set (or, with nil, clear) the scheduling constraints; their table."""
        if value is None:
            self.schedule = None
            return None
        try:
            self.schedule = parse_schedule(value)
        except ValueError as exc:
            raise ConfigError(f"set_scheduling: {exc}") from None
        self.due = next_allowed(self.schedule, self.due if self.due is not None else time.time())
        return schedule_json(self.schedule)

    def import_scheduling_header(
        self, name: str, remove: bool | None = None
    ) -> dict[str, str] | None:
        """set_scheduling from a header holding its JSON; nil when there is no such header."""
        value = self.get_first_named_header_value(str(name))
        if value is None:
            return None
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise ConfigError(
                f"{value} from header {name} is not a valid Scheduling header: {exc}"
            ) from None
        result = self.set_scheduling(parsed)
        if remove:
            self.remove_all_named_headers(str(name))
        return result

    def set_due(self, due: Any = None) -> str | None:
        """The first attempt's time (RFC 3339; nil: as soon as possible), moved into the
        schedule; the time set, in UTC (nil when as soon as possible and unscheduled)."""
        if due is None:
            self.due = None if self.schedule is None else next_allowed(self.schedule, time.time())
        else:
            try:
                when = parse_rfc3339(due).timestamp()
            except ValueError as exc:
                raise ConfigError(f"set_due: {exc}") from None
            self.due = next_allowed(self.schedule, when)
        return None if self.due is None else utc_text(self.due)

    # --- spool operations with no counterpart --------------------------------------------------

    def save(self) -> None:
        """No effect: the message is spooled durably when the event returns."""

    def set_force_sync(self, force: Any = None) -> None:
        """No effect: every spool write is durable already."""

    def shrink(self) -> bool:
        """No effect (nothing is released while the event runs): false."""
        return False

    def shrink_data(self) -> bool:
        """No effect: false."""
        return False
