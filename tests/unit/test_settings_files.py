"""``CHARGEFLOW_<NAME>_FILE``: a setting read from a file (Docker and Kubernetes secrets)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chargeflow.settings_doc import PROCESSES, known_variables, unknown_variables
from ingest.gateway.settings import GatewaySettings
from notify.settings import WebhooksSettings
from runtime.settings import SettingsError, file_variable


@pytest.fixture
def no_chargeflow_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("CHARGEFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_secret_and_a_plain_setting_come_from_files(
    no_chargeflow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = no_chargeflow_env / "database_url"
    url.write_text("postgresql://app:s3cret-from-file@db:5432/chargeflow\n")
    port = no_chargeflow_env / "port"
    port.write_text("9443")
    monkeypatch.setenv("CHARGEFLOW_DATABASE_URL_FILE", str(url))
    monkeypatch.setenv("CHARGEFLOW_GATEWAY_PORT_FILE", str(port))
    settings = GatewaySettings.load()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == (
        "postgresql://app:s3cret-from-file@db:5432/chargeflow"
    )
    assert settings.gateway_port == 9443
    assert "s3cret-from-file" not in repr(settings)


def test_a_list_setting_is_json_in_its_file(
    no_chargeflow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoints = no_chargeflow_env / "endpoints.json"
    endpoints.write_text(
        '[{"name": "ops", "url": "https://hooks.example.com/a", '
        '"secret": "0123456789abcdef0123"}]\n'
    )
    monkeypatch.setenv("CHARGEFLOW_WEBHOOKS_ENDPOINTS_FILE", str(endpoints))
    settings = WebhooksSettings.load()
    assert [e.name for e in settings.webhooks_endpoints] == ["ops"]
    endpoints.write_text("[not json")
    with pytest.raises(
        SettingsError, match=r"CHARGEFLOW_WEBHOOKS_ENDPOINTS_FILE: .*not valid JSON"
    ):
        WebhooksSettings.load()


def test_both_or_an_unreadable_file_is_one_clear_error(
    no_chargeflow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = no_chargeflow_env / "url"
    secret.write_text("postgresql://app:hidden-pw@db/x")
    monkeypatch.setenv("CHARGEFLOW_DATABASE_URL_FILE", str(secret))
    monkeypatch.setenv("CHARGEFLOW_DATABASE_URL", "postgresql://app:other-pw@db/x")
    with pytest.raises(SettingsError) as both:
        GatewaySettings.load()
    assert "CHARGEFLOW_DATABASE_URL and CHARGEFLOW_DATABASE_URL_FILE are both set" in str(
        both.value
    )
    assert "hidden-pw" not in str(both.value)
    assert "other-pw" not in str(both.value)
    monkeypatch.delenv("CHARGEFLOW_DATABASE_URL")
    monkeypatch.setenv("CHARGEFLOW_DATABASE_URL_FILE", str(no_chargeflow_env / "missing"))
    with pytest.raises(SettingsError, match=r"CHARGEFLOW_DATABASE_URL_FILE: cannot read .*missing"):
        GatewaySettings.load()


def test_a_bad_value_in_a_file_names_the_setting(
    no_chargeflow_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = no_chargeflow_env / "port"
    port.write_text("not-a-port")
    monkeypatch.setenv("CHARGEFLOW_GATEWAY_PORT_FILE", str(port))
    with pytest.raises(SettingsError, match="CHARGEFLOW_GATEWAY_PORT"):
        GatewaySettings.load()


def test_file_variables_are_known_and_never_collide_with_a_setting() -> None:
    fields = {name for _, _, model in PROCESSES for name in model.model_fields}
    assert not {f"{name}_file" for name in fields} & fields
    assert file_variable("database_url") in known_variables()
    assert unknown_variables(
        {"CHARGEFLOW_DATABASE_URL_FILE": "/x", "CHARGEFLOW_DATABSE_URL_FILE": "/x"}
    ) == ["CHARGEFLOW_DATABSE_URL_FILE"]
