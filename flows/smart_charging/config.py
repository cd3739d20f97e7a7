"""The smart-charging flow's config: the common flow config plus its control rules
(``flows.smart_charging.logic.ControlPolicy``; durations in telemetry seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from flows.config import FlowConfig


@dataclass(frozen=True)
class SmartChargingFlowConfig(FlowConfig):
    """Where the smart-charging flow reads from and writes to, and how it controls."""

    # Seconds (processing time) between reloads of the sites' rules from the registry.
    rules_refresh_s: Annotated[float, Field(gt=0)] = 2.0
    # Seconds a station has to follow an accepted limit before a higher draw marks it
    # non-compliant, and the draw above the limit (A) that still counts as following.
    reaction_window_s: Annotated[float, Field(gt=0)] = 30.0
    tolerance_a: Annotated[float, Field(ge=0)] = 1.0
    # Seconds the fail-safe ChargePointMaxProfile stays at the stations' maximum before
    # it falls to the station's share of the site limit (renewed every half lease), and
    # how soon a fail-safe that did not reach its station is sent again.
    lease_s: Annotated[float, Field(ge=60)] = 600.0
    retry_s: Annotated[float, Field(gt=0)] = 60.0
    # The per-station rate limit: seconds between two updates of a station's limits,
    # and the smallest change (A) worth an update.
    min_update_interval_s: Annotated[float, Field(ge=0)] = 300.0
    threshold_a: Annotated[float, Field(gt=0)] = 1.0
    # Seconds a powered session keeps its turn before an equal that waits takes it.
    rotation_period_s: Annotated[float, Field(gt=0)] = 900.0
    # The commands' expiry and answer timeout (wall-clock seconds).
    command_ttl_s: Annotated[float, Field(gt=0)] = 60.0
    command_timeout_s: Annotated[float, Field(gt=0)] = 30.0
