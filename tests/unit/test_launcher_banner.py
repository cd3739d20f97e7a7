"""The launcher's banner tells a newcomer where the gateway's health and metrics are."""

from __future__ import annotations

import pytest

from chargeflow.launcher import LocalStack, banner
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
