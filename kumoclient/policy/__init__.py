"""The Lua policy: a sandboxed lupa runtime with KumoMTA's `kumo` API and events."""

from kumoclient.policy.events import EVENTS, EventSpec
from kumoclient.policy.limits import PolicyLimits
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyHolder, PolicyRuntime

__all__ = ["EVENTS", "EventSpec", "MemoRegistry", "PolicyHolder", "PolicyLimits", "PolicyRuntime"]
