"""Settings of the flow processes (``python -m flows.run "flows.<name>.dataflow:from_env()"``).

``CHARGEFLOW_FLOW_*`` for every field of :class:`~flows.config.FlowConfig` (and of
:class:`~flows.sessions.config.SessionsFlowConfig` for the sessions flow,
:class:`~flows.faults.config.FaultsFlowConfig` for the faults flow,
:class:`~flows.messages.config.MessagesFlowConfig` for the messages flow), the rules of
each flow (``CHARGEFLOW_SESSION_*``, ``CHARGEFLOW_LOAD_*``) and the shared Kafka,
database, topic and logging parts; read like every process's (environment, ``.env``:
:mod:`runtime.settings`). A tunable of every flow goes on ``FlowConfig``; one flow's
own rule is a field on its model here.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from pydantic import Field

from bus.topics import Topics
from flows.config import FlowConfig
from flows.faults.config import FaultsFlowConfig
from flows.messages.config import MessagesFlowConfig
from flows.sessions.config import SessionsFlowConfig
from flows.sessions.registers import RegisterRules
from flows.sessions.rules import DEFAULT_RULES, SessionRules
from flows.smart_charging.config import SmartChargingFlowConfig
from runtime.settings import (
    ComponentFields,
    DatabaseSettings,
    KafkaSettings,
    LoggingSettings,
    SettingsError,
    TopicSettings,
)

_SHARED = ("brokers", "database_url", "topics")
_WIRING = ("starting_offset", "kafka_config")


class FlowSettings(KafkaSettings, DatabaseSettings, TopicSettings, LoggingSettings):
    """The status flow's settings, and what every flow has."""

    __component__ = ComponentFields(FlowConfig, prefix="flow_", shared=_SHARED, exclude=_WIRING)

    def _shared(self) -> dict[str, object]:
        brokers = self.kafka_brokers
        if not brokers:
            raise SettingsError("CHARGEFLOW_KAFKA_BOOTSTRAP is required")
        return {
            "brokers": brokers,
            "database_url": self.require("database_url"),
            "topics": Topics.with_prefix(self.topic_prefix),
        }

    def flow_config(self) -> FlowConfig:
        config: FlowConfig = self.build_component(**self._shared())
        return config


StatusFlowSettings = FlowSettings


class LoadFlowSettings(FlowSettings):
    load_publish_interval_s: float = Field(
        5.0, gt=0, description="seconds between a site's load.sites updates"
    )
    load_heartbeat_s: float = Field(
        30.0, gt=0, description="a site's load is published at least this often, unchanged or not"
    )


class SessionsFlowSettings(FlowSettings):
    __component__ = ComponentFields(
        SessionsFlowConfig, prefix="flow_", shared=(*_SHARED, "rules"), exclude=_WIRING
    )

    session_idle_timeout_s: float = Field(
        DEFAULT_RULES.idle_timeout.total_seconds(),
        gt=0,
        description="close a session without StopTransaction after this much station "
        "event time without news of it",
    )
    session_max_power_w: int = Field(
        DEFAULT_RULES.registers.max_power_w,
        ge=1,
        description="register plausibility: the most any connector can draw",
    )
    session_meter_tolerance_pct: float = Field(
        float(DEFAULT_RULES.meter_tolerance_ratio * 100),
        gt=0,
        description="smart-meter cross-check: relative tolerance, percent",
    )
    session_meter_tolerance_wh: float = Field(
        float(DEFAULT_RULES.meter_tolerance_wh),
        gt=0,
        description="smart-meter cross-check: absolute tolerance, Wh",
    )

    def rules(self) -> SessionRules:
        return SessionRules(
            registers=RegisterRules(max_power_w=self.session_max_power_w),
            idle_timeout=timedelta(seconds=self.session_idle_timeout_s),
            meter_tolerance_ratio=Decimal(str(self.session_meter_tolerance_pct)) / 100,
            meter_tolerance_wh=Decimal(str(self.session_meter_tolerance_wh)),
        )

    def flow_config(self) -> SessionsFlowConfig:
        config: SessionsFlowConfig = self.build_component(**self._shared(), rules=self.rules())
        return config


class FaultsFlowSettings(FlowSettings):
    """The faults flow's settings (``CHARGEFLOW_FLOW_PUBLISH_ALERTS`` too)."""

    __component__ = ComponentFields(
        FaultsFlowConfig, prefix="flow_", shared=_SHARED, exclude=_WIRING
    )

    def flow_config(self) -> FaultsFlowConfig:
        config: FaultsFlowConfig = self.build_component(**self._shared())
        return config


class MessagesFlowSettings(FlowSettings):
    """The messages flow's settings (``CHARGEFLOW_MESSAGES_RETENTION_DAYS`` too)."""

    __component__ = ComponentFields(
        MessagesFlowConfig,
        prefix="flow_",
        names={
            "retention_days": "messages_retention_days",
            "retention_check_s": "messages_retention_check_s",
        },
        shared=_SHARED,
        exclude=_WIRING,
    )

    def flow_config(self) -> MessagesFlowConfig:
        config: MessagesFlowConfig = self.build_component(**self._shared())
        return config


class SmartChargingFlowSettings(FlowSettings):
    """The smart-charging flow's settings (``CHARGEFLOW_SMART_*`` for its control rules)."""

    __component__ = ComponentFields(
        SmartChargingFlowConfig,
        prefix="flow_",
        names={
            name: f"smart_{name}"
            for name in (
                "rules_refresh_s",
                "reaction_window_s",
                "tolerance_a",
                "lease_s",
                "lead_s",
                "retry_s",
                "min_update_interval_s",
                "threshold_a",
                "rotation_period_s",
                "command_ttl_s",
                "command_timeout_s",
            )
        },
        shared=_SHARED,
        exclude=_WIRING,
    )

    def flow_config(self) -> SmartChargingFlowConfig:
        config: SmartChargingFlowConfig = self.build_component(**self._shared())
        return config
