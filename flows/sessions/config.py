"""The sessions flow's config: the common flow config plus its accounting rules."""

from __future__ import annotations

from dataclasses import dataclass

from flows.config import FlowConfig
from flows.sessions.rules import DEFAULT_RULES, SessionRules


@dataclass(frozen=True)
class SessionsFlowConfig(FlowConfig):
    """Where the sessions flow reads from and writes to, and its accounting rules."""

    rules: SessionRules = DEFAULT_RULES
    # Publish each closed session (the sessions_outbox) to the sessions.closed topic.
    publish_closed: bool = True
