"""The messages flow's config: the common flow config plus the history's retention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from flows.config import FlowConfig


@dataclass(frozen=True)
class MessagesFlowConfig(FlowConfig):
    """Where the messages flow reads from and writes to, and how long it keeps them."""

    # Days of ocpp_messages kept (by received_at).
    retention_days: Annotated[int, Field(ge=1)] = 30
    # Seconds between the retention deletes (plain PostgreSQL).
    retention_check_s: Annotated[float, Field(gt=0)] = 3600.0
