"""kumoclient: an asyncio outbound SMTP delivery daemon whose policy is KumoMTA-style Lua."""

from kumoclient.engine.engine import Engine
from kumoclient.errors import (
    ConfigError,
    EngineStopped,
    KumoClientError,
    PolicyError,
    PolicyLoadError,
)
from kumoclient.policy import PolicyHolder, PolicyRuntime
from kumoclient.records import Disposition, EnhancedCode, QueueName, Reply, RewriteOutcome

__all__ = [
    "ConfigError",
    "Disposition",
    "Engine",
    "EngineStopped",
    "EnhancedCode",
    "KumoClientError",
    "PolicyError",
    "PolicyHolder",
    "PolicyLoadError",
    "PolicyRuntime",
    "QueueName",
    "Reply",
    "RewriteOutcome",
    "load_policy",
]


def load_policy(path: str) -> PolicyRuntime:
    """Load a Lua policy file into a new sandboxed runtime."""
    return PolicyRuntime(path)
