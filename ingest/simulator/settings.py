"""Settings of the station simulator (``chargeflow simulate``; its options win).

The local demo runs in real time (timestamps are wall-clock) with short plug-in times,
so sessions close within minutes. See :mod:`runtime.settings` for how to add one."""

from __future__ import annotations

from pydantic import Field, SecretStr

from runtime.settings import LoggingSettings, MqttSettings


class SimulatorSettings(MqttSettings, LoggingSettings):
    simulated_stations: int = Field(20, ge=1, description="simulated charge points")
    simulator_meter_interval_s: float = Field(
        5.0, gt=0, description="simulated seconds between a station's MeterValues"
    )
    simulator_time_scale: float = Field(1.0, gt=0, description="simulated seconds per real second")
    simulator_mean_dwell_s: float = Field(
        240.0, gt=0, description="mean simulated seconds an EV stays plugged in"
    )
    simulator_mean_arrival_gap_s: float = Field(
        60.0, gt=0, description="mean simulated seconds between sessions on a connector"
    )
    simulator_station_password: SecretStr | None = Field(
        None,
        description="HTTP Basic password of the simulated stations "
        "(`chargeflow run` generates one per run)",
    )
    simulator_ocpp_versions: str = Field(
        "1.6,2.0.1",
        pattern=r"^\s*(1\.6|2\.0\.1)\s*(,\s*(1\.6|2\.0\.1)\s*)*$",
        description="OCPP versions the stations take in turn (a mixed fleet by default)",
    )
    simulated_meter_interval_s: float = Field(
        10.0, gt=0, description="seconds between a simulated smart meter's readings"
    )
    simulator_seed: int = Field(0, description="seed of the whole simulated fleet (runs repeat)")
    simulator_station_models: str = Field(
        "mixed",
        pattern=r"^\s*[A-Za-z0-9-]+\s*(,\s*[A-Za-z0-9-]+\s*)*$",
        description="station models taken in turn (SIM-AC22, SIM-AC11, SIM-AC7, SIM-AC22B), "
        "or mixed: a seeded draw per station",
    )
    simulator_varied_use: bool = Field(
        True, description="heavy and light stations, and EVs that stop drawing early"
    )
    simulator_idle_meter_interval_s: float | None = Field(
        900.0,
        gt=0,
        description="simulated seconds between a free connector's clock-aligned MeterValues "
        "(unset: none)",
    )
    simulator_signed_meter_values: bool = Field(
        False,
        description="the stations' meters also sign the start and end registers (Eichrecht, "
        "OCMF-like: 1.6 SignedData, 2.0.1 signedMeterValue); the CDRs carry them",
    )
    simulator_faults: str = Field(
        "",
        description="faults to inject: auto[:SHARE[@FROM..TO]] or "
        "SCENARIO:STATION[/CONNECTOR]@ONSET[+LEAD],... (docs/simulator.md); empty: none",
    )
