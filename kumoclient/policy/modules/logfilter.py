"""`kumo.set_diagnostic_log_filter(FILTER)`: the operational log's filter, changed at once
(logs/filter.py has the directive language: `kumod=info,lua=debug`)."""

from __future__ import annotations

from typing import Any

from kumoclient import logs
from kumoclient.policy.api import kumo_function
from kumoclient.policy.modules.args import text


@kumo_function("set_diagnostic_log_filter")
def set_diagnostic_log_filter(value: Any) -> None:
    """Replace the diagnostic log filter of this process; a bad directive is an error."""
    logs.set_diagnostic_filter(text("kumo.set_diagnostic_log_filter", value))
