"""The sessions flow's accounting limits: one frozen value, part of the flow's config
(:class:`flows.sessions.config.SessionsFlowConfig`) and of every call into the logic."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from flows.sessions.registers import RegisterRules


@dataclass(frozen=True, slots=True)
class SessionRules:
    """Configurable limits (the modules of :mod:`flows.sessions` say what each bounds)."""

    registers: RegisterRules = field(default_factory=RegisterRules)
    idle_timeout: timedelta = timedelta(hours=6)
    meter_window: timedelta = timedelta(minutes=15)
    meter_grace: timedelta = timedelta(minutes=5)
    meter_tolerance_ratio: Decimal = Decimal("0.01")
    meter_tolerance_wh: Decimal = Decimal(10)
    amend_window: timedelta = timedelta(hours=2)
    # Smart-meter readings kept per connector (for transactions whose start or stop
    # is processed after them; runs of equal values keep only their ends).
    meter_retention: timedelta = timedelta(hours=6)
    keep_closed: int = 16


DEFAULT_RULES = SessionRules()
