"""The Jinja sandbox every template of kumoclient renders in (the inject API's messages,
`kumo.string.eval_template`): no access to Python internals, and no operator that makes a huge
value from a short template."""

from __future__ import annotations

from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_SEQUENCE = 1024 * 1024  # longest string or list that `*` may make in a template
MAX_EXPONENT = 1000


class Sandbox(SandboxedEnvironment):
    """Jinja's sandbox that also refuses the two operators that make huge values from a short
    template: `'x' * 10**9` and `9 ** 9 ** 9`. (Templates come from trusted or authenticated
    sources; this is not a CPU-time limit.)"""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is over the limit of {MAX_EXPONENT}")
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(count, int)
                    and len(sequence) * count > MAX_SEQUENCE
                ):
                    raise SecurityError(
                        f"'*' would make {len(sequence) * count} items, "
                        f"over the limit of {MAX_SEQUENCE}"
                    )
        return super().call_binop(context, operator, left, right)
