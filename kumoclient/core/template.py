"""The inject API's templates: Jinja in a sandbox, with a time and a size bound.

Jinja's immutable sandbox (no access to Python internals, no changing a list or dict in place,
as in KumoMTA's MiniJinja), where a template is stopped, with a template error, when:
- rendering one recipient's message takes more than TIME_LIMIT seconds: the clock is read at
  every loop iteration, call (macros too) and operator, so a loop with an empty body is
  stopped too; and at once when the request is given up (`RenderClock.cancel`: the client
  went away, the daemon stops);
- its output, or any value it makes (an operator's, a call's, a filter's, a block's), would be
  over OUTPUT_LIMIT characters. The values that would make a large result from small operands
  are refused before they are made: `'x' * n` past MAX_SEQUENCE items, `a ** b` past
  MAX_EXPONENT, a width or precision past OUTPUT_LIMIT (`center`, `ljust`, `rjust`, `zfill`,
  `indent`, `%` and `format` specifications), `replace` and `join` making more than that, and
  a list whose text would be over the limit where it becomes text (output, `~`, `%`, ...).
The bounds are cooperative (checked by the template's own code), not a separate process: one
step that none of these checks foresees still runs to its end.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

TIME_LIMIT = 2.0  # seconds of rendering for one recipient's message
OUTPUT_LIMIT = 20 * 1024 * 1024  # characters: a template's output, or any value it makes
MAX_SEQUENCE = 1024 * 1024  # longest string or list that `*` may make
MAX_EXPONENT = 1000

_WIDTH_METHODS = {"center", "ljust", "rjust", "zfill", "expandtabs"}
_PLAIN = {str, Markup}
_SCALAR = {int, float, bool, type(None)}  # (an int's text is bounded by Python's own limit)
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*?:([^{}]*)\}|\{[^{}]*\{")


class OverLimit(SecurityError):
    """A template went past its time or size bound."""


class RenderClock:
    """The time bound of one request's renders: `restart()` for each recipient's message,
    `cancel()` to stop them all (from another thread)."""

    def __init__(self, seconds: float = TIME_LIMIT) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.cancelled = False
        self.sizes: dict[int, tuple[object, int]] = {}  # id -> (value, text size) measured

    def restart(self) -> None:
        self.deadline = time.monotonic() + self.seconds
        self.sizes.clear()

    def cancel(self) -> None:
        self.cancelled = True

    def check(self) -> None:
        if self.cancelled:
            raise OverLimit("the request was given up")
        if time.monotonic() > self.deadline:
            raise OverLimit(f"rendering took more than {self.seconds:g} s (the time limit)")


CLOCK: contextvars.ContextVar[RenderClock | None] = contextvars.ContextVar("clock", default=None)


def _tick() -> None:
    clock = CLOCK.get()
    if clock is not None and (clock.cancelled or time.monotonic() > clock.deadline):
        clock.check()


def _sized(value: Any) -> Any:
    """`value`, when it is within the bounds: a string of OUTPUT_LIMIT characters, a list,
    tuple or dict of MAX_SEQUENCE items."""
    if isinstance(value, str | bytes):
        if len(value) > OUTPUT_LIMIT:
            raise OverLimit(f"a text of {len(value)} characters, over the limit of {OUTPUT_LIMIT}")
    elif isinstance(value, list | tuple | dict) and len(value) > MAX_SEQUENCE:
        raise OverLimit(f"a list of {len(value)} items, over the limit of {MAX_SEQUENCE}")
    return value


def _text_size(value: Any) -> int:
    """About how many characters `str(value)` has, found without making it (containers are
    walked until the count passes OUTPUT_LIMIT; measured ones are remembered per render)."""
    if not isinstance(value, list | tuple | dict | set | frozenset):
        return len(value) if isinstance(value, str | bytes) else 32
    clock = CLOCK.get()
    known = clock.sizes.get(id(value)) if clock is not None else None
    if known is not None and known[0] is value:
        return known[1]
    size, stack = 2, [value]
    while stack and size <= OUTPUT_LIMIT:
        items = stack.pop()
        for item in items.items() if isinstance(items, dict) else items:
            if isinstance(item, list | tuple | dict | set | frozenset):
                stack.append(item)
            size += _text_size(item) + 2 if isinstance(item, str | bytes) else 32
    if clock is not None and len(clock.sizes) < 256:
        clock.sizes[id(value)] = (value, size)
    return size


def _as_text(value: Any) -> Any:
    """`value`, when its text would not be over OUTPUT_LIMIT."""
    kind = type(value)
    if kind in _SCALAR or (kind in _PLAIN and len(value) <= OUTPUT_LIMIT):
        return value  # (the common cases, first)
    if _text_size(value) > OUTPUT_LIMIT:
        raise OverLimit(f"a value whose text is over the limit of {OUTPUT_LIMIT} characters")
    return value


def _check_widths(numbers: Iterable[Any]) -> None:
    for number in numbers:
        if isinstance(number, int) and abs(number) > OUTPUT_LIMIT:
            raise OverLimit(f"a width of {number}, over the limit of {OUTPUT_LIMIT}")


def _check_format(spec: str, args: Iterable[Any], printf: bool) -> None:
    """A `%` or `str.format` specification with no width or precision past the limit."""
    widest, from_arguments = _widths(spec, printf)
    _check_widths([widest])
    if from_arguments:  # `%*d`, `{:{width}}`
        _check_widths(args)


@functools.lru_cache(maxsize=256)
def _widths(spec: str, printf: bool) -> tuple[int, bool]:
    """The largest width or precision written in a format specification, and whether some
    are taken from the arguments."""
    if printf:
        groups = [g for match in _PRINTF.finditer(spec) for g in match.groups() if g]
    else:
        specs = [m[1] if m[1] is not None else "{" for m in _FORMAT_SPEC.finditer(spec)]
        groups = [d for g in specs for d in re.findall(r"\d+", g) + ["*"] * ("{" in g)]
    return max((int(g) for g in groups if g.isdigit()), default=0), "*" in groups


def _check_replace(value: str, old: str, new: str) -> None:
    growth = (value.count(old) if old else len(value) + 1) * (len(new) - len(old))
    if len(value) + growth > OUTPUT_LIMIT:
        raise OverLimit(f"'replace' would make over {OUTPUT_LIMIT} characters")


def _check_join(separator: Any, items: list[Any] | tuple[Any, ...]) -> None:
    size = len(str(_as_text(separator))) * max(len(items) - 1, 0)
    if size + sum(_text_size(item) for item in items) > OUTPUT_LIMIT:
        raise OverLimit(f"'join' would make over {OUTPUT_LIMIT} characters")


def _text_filter(values: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    _as_text(values[0])


def _width_filter(values: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    _as_text(values[0])
    _check_widths([*values[1:], *kwargs.values()])


def _format_filter(values: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    spec = values[0]
    if isinstance(spec, str):
        widest, from_arguments = _widths(spec, True)
        if widest > OUTPUT_LIMIT or from_arguments:
            _check_format(spec, [*values[1:], *kwargs.values()], printf=True)
    for value in values[1:]:
        _as_text(value)


def _replace_filter(values: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if len(values) >= 3:
        _check_replace(*(str(v) for v in values[:3]))


def _join_filter(values: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """(`join` is then called with its items as a list, counted here)"""
    items = values[0] if isinstance(values[0], list | tuple) else list(_ticking(values[0]))
    _check_join(values[1] if len(values) > 1 else kwargs.get("d", ""), items)
    return (items, *values[1:])


FilterCheck = Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...] | None]
# the filters that may make a large text from a small input, and their checks (the others make
# at most what they are given, and take no longer than their input is long)
_FILTER_CHECKS: dict[str, FilterCheck] = {
    **dict.fromkeys(("string", "tojson", "pprint", "wordwrap", "urlencode"), _text_filter),
    "center": _width_filter,
    "indent": _width_filter,
    "format": _format_filter,
    "replace": _replace_filter,
    "join": _join_filter,
}


def _guard_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    check = _FILTER_CHECKS[name]
    # a filter marked pass_context (pass_environment, ...) gets that object first
    skip = 1 if getattr(function, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(function)  # (keeps that mark)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if len(args) > skip:
            values = check(args[skip:], kwargs)
            if values is not None:
                args = (*args[:skip], *values)
        return _sized(function(*args, **kwargs))

    return guarded


def _check_operands(operator: str, left: Any, right: Any) -> None:
    """Refuse `*`, `**`, `+` and `%` whose result would be past the bounds, before it is made."""
    sequences = (str, list, tuple)
    if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
        raise OverLimit(f"exponent {right} is over the limit of {MAX_EXPONENT}")
    if operator == "*":
        for sequence, count in ((left, right), (right, left)):
            if not (isinstance(sequence, sequences) and isinstance(count, int)):
                continue
            made = len(sequence) * count
            if made > MAX_SEQUENCE:
                raise OverLimit(f"'*' would make {made} items, over the limit of {MAX_SEQUENCE}")
    if operator == "+" and isinstance(left, sequences) and isinstance(right, sequences):
        limit = OUTPUT_LIMIT if isinstance(left, str) else MAX_SEQUENCE  # (as in _sized)
        if len(left) + len(right) > limit:
            raise OverLimit(f"'+' would make {len(left) + len(right)} items, over {limit}")
    if operator == "%" and isinstance(left, str):
        values = right if isinstance(right, tuple) else (right,)
        _check_format(left, values, printf=True)
        for value in values:
            _as_text(value)


class _Guard(NodeTransformer):
    """Every loop's iterable goes through `environment.loop`, every `~` through
    `environment.as_text` (operands) and `environment.sized` (result)."""

    def __init__(self, environment: Sandbox) -> None:
        self.environment = environment

    def call(self, name: str, node: nodes.Node) -> nodes.Call:
        call = nodes.Call(nodes.EnvironmentAttribute(name), [node], [], None, None)
        call.set_lineno(node.lineno or 1).set_environment(self.environment)
        return call

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self.call("loop", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [self.call("as_text", operand) for operand in node.nodes]
        return self.call("sized", node)


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with the bounds of this module (see its docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, html: bool, finalize: Callable[[Any], Any] | None = None) -> None:
        finish = self._finalize if finalize is None else (lambda v: _as_text(finalize(v)))
        super().__init__(keep_trailing_newline=True, autoescape=html, finalize=finish)
        self.filters.update(
            {name: _guard_filter(name, self.filters[name]) for name in _FILTER_CHECKS}
        )

    def from_source(self, source: str) -> Any:
        """A template of `source` with the bounds compiled in (TemplateSyntaxError)."""
        return self.from_string(_Guard(self).visit(self.parse(source)))

    @staticmethod
    def loop(iterable: Any) -> Any:
        """A loop's iterable, reading the clock at each item."""
        _tick()
        if isinstance(iterable, list | tuple | str | dict) and len(iterable) <= 64:
            return iterable  # (the clock is read at the next loop's start)
        return _ticking(iterable)

    as_text = staticmethod(_as_text)
    sized = staticmethod(_sized)

    _finalize = staticmethod(_as_text)  # every `{{ ... }}` before it becomes text

    @staticmethod
    def concat(pieces: Iterable[str]) -> str:
        """Joins the output of blocks, macros and whole templates, up to OUTPUT_LIMIT."""
        kept: list[str] = []
        size, produce = 0, iter(pieces)
        while batch := list(itertools.islice(produce, 256)):
            size += sum(map(len, batch))
            if size > OUTPUT_LIMIT:
                raise OverLimit(f"the output is over the limit of {OUTPUT_LIMIT} characters")
            kept += batch
        return "".join(kept)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _check_operands(operator, left, right)
        return _sized(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        method = getattr(__obj, "__wrapped__", __obj)  # (str.format comes wrapped)
        owner, name = getattr(method, "__self__", None), getattr(method, "__name__", "")
        if isinstance(owner, str):
            _check_method(owner, name, args, kwargs)
        return _sized(super().call(__context, __obj, *args, **kwargs))


def _check_method(text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a call of a `str` method whose result would be past the bounds."""
    others = [*args, *kwargs.values()]
    if name in _WIDTH_METHODS:
        _check_widths(others)
    elif name in ("format", "format_map"):
        _check_format(text, others, printf=False)
        for value in others:
            _as_text(value)
    elif name == "replace" and len(args) >= 2:
        _check_replace(text, str(args[0]), str(args[1]))
    elif name == "join" and args and isinstance(args[0], list | tuple):
        _check_join(text, args[0])


def _ticking(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _tick()
        yield item


def render_bounded(template: Any, variables: Any, seconds: float = TIME_LIMIT) -> str:
    """Render a template of `Sandbox.from_source` within its own time bound (OverLimit)."""
    token = CLOCK.set(RenderClock(seconds))
    try:
        return str(template.render(variables))
    finally:
        CLOCK.reset(token)
