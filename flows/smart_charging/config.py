"""The smart-charging flow's config: the common flow config plus its control rules
(``flows.smart_charging.logic.ControlPolicy``; durations in telemetry seconds unless
said otherwise)."""

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
    # non-compliant.
    reaction_window_s: Annotated[float, Field(gt=0)] = 30.0
    # Amperes above its limit a station may draw and still count as following it.
    tolerance_a: Annotated[float, Field(ge=0)] = 1.0
    # Seconds the fail-safe profiles stay as they are while the flow runs (the station at
    # its maximum, new sessions at 0 A until their TxProfile) before they fall to the
    # station's share of the site limit; renewed every half lease.
    lease_s: Annotated[float, Field(ge=60)] = 1800.0
    # Seconds early a lower limit announced ahead (a limit window) is applied, so that the
    # stations follow it by the time it begins.
    lead_s: Annotated[float, Field(ge=0)] = 10.0
    # Seconds before a fail-safe that did not reach its station is sent again.
    retry_s: Annotated[float, Field(gt=0)] = 60.0
    # The per-station rate limit: least seconds between two updates of a station's limits.
    min_update_interval_s: Annotated[float, Field(ge=0)] = 300.0
    # The smallest change of a limit (A) worth an update.
    threshold_a: Annotated[float, Field(gt=0)] = 1.0
    # Seconds a powered session keeps its turn before an equal that waits longer takes it.
    rotation_period_s: Annotated[float, Field(gt=0)] = 900.0
    # Wall-clock seconds a smart-charging command may wait for a gateway before it expires.
    command_ttl_s: Annotated[float, Field(gt=0)] = 60.0
    # Wall-clock seconds a station has to answer a smart-charging command.
    command_timeout_s: Annotated[float, Field(gt=0)] = 30.0
