"""The `msg` object of KumoMTA's policy API and the objects it hands out (envelope addresses,
address headers, MIME parts, header maps): see message.py."""

from kumoclient.policy.message.message import MessageView

__all__ = ["MessageView"]
