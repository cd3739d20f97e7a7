"""Topic names. They are settings; these are the defaults from DESIGN.md."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Topics:
    ocpp_events: str = "ocpp.events"
    meter_readings: str = "meter.readings"
    ocpp_commands: str = "ocpp.commands"
    ocpp_command_results: str = "ocpp.command-results"
    sessions_closed: str = "sessions.closed"
    load_sites: str = "load.sites"
    alerts: str = "alerts"
    billing_cdrs: str = "billing.cdrs"
    deadletter: str = "deadletter"

    def all(self) -> list[str]:
        return [getattr(self, f.name) for f in fields(self)]

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        """Every default name behind a prefix, e.g. to isolate tests on one broker."""
        base = cls()
        return cls(**{f.name: prefix + getattr(base, f.name) for f in fields(cls)})
