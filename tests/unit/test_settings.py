"""The settings models: environment and ``.env``, secrets, one-line errors, and that
every field of a component's config is a setting."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from api.settings import ApiSettings
from chargeflow.settings import Settings
from flows.settings import LoadFlowSettings, SessionsFlowSettings, StatusFlowSettings
from ingest.gateway.config import GatewayConfig
from ingest.gateway.settings import GatewaySettings
from ingest.meters.settings import MeterBridgeSettings
from ingest.simulator.settings import SimulatorSettings
from runtime.settings import ModelMetaclass, SettingsError, field_comments
from tests.support.paths import ROOT


@pytest.fixture
def no_chargeflow_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CHARGEFLOW_* variable set, and a working directory of its own (for .env)."""
    for name in list(os.environ):
        if name.startswith("CHARGEFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_flows_and_api_read_dotenv_and_the_environment_wins(
    no_chargeflow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_chargeflow_env / ".env").write_text(
        "CHARGEFLOW_KAFKA_BOOTSTRAP=k1:9092,k2:9092\n"
        "CHARGEFLOW_DATABASE_URL=postgresql://u@h/from_dotenv\n"
        "CHARGEFLOW_FLOW_BATCH_SIZE=77\n"
        "CHARGEFLOW_SESSION_IDLE_TIMEOUT_S=60\n"
        "CHARGEFLOW_API_PORT=8123\n"
        "CHARGEFLOW_API_POOL_MAX_SIZE=3\n"
    )
    sessions = SessionsFlowSettings.load().flow_config()
    assert sessions.brokers == ["k1:9092", "k2:9092"]
    assert sessions.database_url == "postgresql://u@h/from_dotenv"
    assert sessions.batch_size == 77
    assert sessions.rules.idle_timeout.total_seconds() == 60
    assert StatusFlowSettings.load().flow_config().batch_size == 77
    assert LoadFlowSettings.load().flow_config().batch_size == 77
    api = ApiSettings.load()
    assert api.api_port == 8123
    assert api.config().pool_max_size == 3
    assert api.config().database_url == "postgresql://u@h/from_dotenv"

    monkeypatch.setenv("CHARGEFLOW_FLOW_BATCH_SIZE", "5")
    monkeypatch.setenv("CHARGEFLOW_API_PORT", "8124")
    assert SessionsFlowSettings.load().flow_config().batch_size == 5
    assert ApiSettings.load().api_port == 8124


def test_every_gateway_config_field_is_a_setting(
    no_chargeflow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = {"kafka_bootstrap", "database_url", "topics"}
    for f in dataclasses.fields(GatewayConfig):
        if f.name in shared:
            continue
        name = GatewaySettings.__component__.setting_name(f.name)
        assert name in GatewaySettings.model_fields, f.name
    monkeypatch.setenv("CHARGEFLOW_GATEWAY_AUTH_COOLDOWN_S", "7.5")
    monkeypatch.setenv("CHARGEFLOW_GATEWAY_AUTH_MAX_CONCURRENT_VERIFICATIONS", "9")
    monkeypatch.setenv("CHARGEFLOW_GATEWAY_DATA_TRANSFER_VENDOR_IDS", '["com.acme"]')
    monkeypatch.setenv("CHARGEFLOW_GATEWAY_ID", "gw-7")
    monkeypatch.setenv("CHARGEFLOW_KAFKA_BOOTSTRAP", "k:9092")
    monkeypatch.setenv("CHARGEFLOW_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("CHARGEFLOW_TOPIC_PREFIX", "dev.")
    config = GatewaySettings.load().config()
    assert config.auth_cooldown_s == 7.5
    assert config.max_concurrent_verifications == 9
    assert config.data_transfer_vendor_ids == frozenset({"com.acme"})
    assert config.gateway_id == "gw-7"
    assert config.port == 9000
    assert config.topics.ocpp_events == "dev.ocpp.events"
    monkeypatch.delenv("CHARGEFLOW_GATEWAY_ID")
    assert GatewaySettings.load().config().gateway_id  # the component's own default


def test_secrets_stay_out_of_repr_dumps_and_errors(
    no_chargeflow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARGEFLOW_DATABASE_URL", "postgresql://u:db-s3cret@h/db")
    monkeypatch.setenv("CHARGEFLOW_MQTT_URL", "mqtt://m:mqtt-s3cret@h:1883")
    monkeypatch.setenv("CHARGEFLOW_SIMULATOR_STATION_PASSWORD", "station-s3cret-password")
    monkeypatch.setenv("CHARGEFLOW_KAFKA_BOOTSTRAP", "k:9092")
    models = [
        Settings.load(),
        GatewaySettings.load(),
        ApiSettings.load(),
        MeterBridgeSettings.load(),
        SessionsFlowSettings.load(),
        SimulatorSettings.load(),
    ]
    for model in models:
        for text in (repr(model), str(model), model.model_dump_json()):
            assert "s3cret" not in text, type(model).__name__
    assert "s3cret" not in repr(MeterBridgeSettings.load().config())
    # The component gets the real value.
    assert ApiSettings.load().config().database_url == "postgresql://u:db-s3cret@h/db"
    monkeypatch.setenv("CHARGEFLOW_MQTT_URL", "http://m:mqtt-s3cret@h")
    with pytest.raises(SettingsError) as bad_url:
        MeterBridgeSettings.load().config()
    assert "s3cret" not in str(bad_url.value)


def test_a_bad_value_is_one_line_naming_the_variable(
    no_chargeflow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARGEFLOW_GATEWAY_PORT", "ninety")
    with pytest.raises(SettingsError) as error:
        GatewaySettings.load()
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("CHARGEFLOW_GATEWAY_PORT: ")
    assert "'ninety'" in message
    monkeypatch.delenv("CHARGEFLOW_GATEWAY_PORT")
    monkeypatch.setenv("CHARGEFLOW_FLOW_SINK_PARTITIONS", "0")
    with pytest.raises(SettingsError, match=r"CHARGEFLOW_FLOW_SINK_PARTITIONS: .*greater"):
        SessionsFlowSettings.load()


def test_the_cli_reports_a_bad_setting_in_one_line(no_chargeflow_env: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CHARGEFLOW_")},
        "CHARGEFLOW_TOPIC_PARTITIONS": "many",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "chargeflow.cli", "topics"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: CHARGEFLOW_TOPIC_PARTITIONS: Input should be a valid integer, unable to "
        "parse string as an integer (got 'many')"
    ]


def test_field_comments_document_settings() -> None:
    docs = field_comments(GatewayConfig)
    assert docs["max_frame_bytes"] == (
        "Larger WebSocket frames close that station's connection with 1009."
    )
    assert docs["max_concurrent_verifications"] == "argon2 worker threads at once"
    assert docs["auth_cache_key"].startswith("The secret HMAC key of verified credentials")
    # pydantic's metaclass, which composes the models, is where runtime.settings expects.
    assert isinstance(GatewaySettings, ModelMetaclass)


def test_a_secret_config_field_is_a_secret_setting(
    no_chargeflow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARGEFLOW_KAFKA_BOOTSTRAP", "k:9092")
    monkeypatch.setenv("CHARGEFLOW_DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("CHARGEFLOW_GATEWAY_AUTH_CACHE_KEY", "hmac-key-not-for-logs")
    settings = GatewaySettings.load()
    assert "hmac-key-not-for-logs" not in repr(settings)
    assert "hmac-key-not-for-logs" not in str(settings.model_dump())
    config = settings.config()
    assert config.auth_cache_key == "hmac-key-not-for-logs"
    assert "hmac-key-not-for-logs" not in repr(config)
