"""The faults flow's config: the common flow config plus whether it publishes alerts."""

from __future__ import annotations

from dataclasses import dataclass

from flows.config import FlowConfig


@dataclass(frozen=True)
class FaultsFlowConfig(FlowConfig):
    """Where the faults flow reads from and writes to."""

    # Publish each stored alert version (the alerts_outbox) to the alerts topic.
    publish_alerts: bool = True
