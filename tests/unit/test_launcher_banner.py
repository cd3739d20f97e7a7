"""The launcher's banner tells a newcomer where the gateway's health and metrics are."""

from __future__ import annotations

import pytest

from chargeflow.launcher import LocalStack, banner, demo_fault_spec
from chargeflow.settings import Settings


def test_the_banner_names_the_gateway_health_readiness_and_metrics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHARGEFLOW_GATEWAY_HOST", "127.0.0.1")
    monkeypatch.setenv("CHARGEFLOW_GATEWAY_PORT", "9123")
    monkeypatch.setenv("CHARGEFLOW_API_PORT", "8123")
    settings = Settings()
    text = banner(
        LocalStack(
            settings,
            bootstrap="127.0.0.1:1",
            database_url="postgresql://x@h/d",
            mqtt_url="mqtt://127.0.0.1:1883",
        ),
        "cf_key",
    )
    lines = [line for line in text.splitlines() if "127.0.0.1:9123/healthz" in line]
    assert len(lines) == 1
    assert "/readyz" in lines[0]
    assert "/metrics" in lines[0]


def _stack(settings: Settings) -> LocalStack:
    return LocalStack(
        settings,
        bootstrap="127.0.0.1:1",
        database_url="postgresql://x@h/d",
        mqtt_url="mqtt://127.0.0.1:1883",
    )


def test_the_demo_faults_are_on_stations_the_fleet_has_and_named_in_the_banner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHARGEFLOW_SIMULATED_STATIONS", "3")
    settings = Settings()
    spec = demo_fault_spec(settings)
    assert spec == "controller:SIM-0003@1m+5m,ground_fault:SIM-0002@3m"  # no SIM-0004
    assert _stack(settings).fault_args()[:2] == ["--faults", spec]
    demo = [
        ln for ln in banner(_stack(settings), "cf_key").splitlines() if ln.startswith("  faults")
    ]
    assert demo == [
        "  faults (demo)   SIM-0003 a failing controller (error bursts from minute 1, Faulted at"
        " 6); SIM-0002 a ground fault at minute 3"
    ]


def test_configured_faults_replace_the_demo_and_the_demo_can_be_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHARGEFLOW_SIMULATOR_FAULTS", "comm:SIM-0001@10m")
    assert _stack(Settings()).fault_args()[:2] == ["--faults", "comm:SIM-0001@10m"]
    monkeypatch.delenv("CHARGEFLOW_SIMULATOR_FAULTS")
    monkeypatch.setenv("CHARGEFLOW_DEMO_FAULTS", "false")
    assert _stack(Settings()).fault_args() == []
    assert "  faults" not in banner(_stack(Settings()), "cf_key")
