"""docs/configuration.md is generated from the settings models and kept in sync."""

from __future__ import annotations

from chargeflow import settings_doc
from runtime.settings import env_name


def test_configuration_doc_is_up_to_date() -> None:
    committed = settings_doc.DOC_PATH.read_text()
    assert committed == settings_doc.render(), (
        f"docs/configuration.md is out of date: run `{settings_doc.REGENERATE}`")


def test_every_setting_of_every_process_is_in_the_doc() -> None:
    text = settings_doc.render()
    for _, _, model in settings_doc.PROCESSES:
        for name in model.model_fields:
            assert f"`{env_name(name)}`" in text, name
    assert "**secret**" in text.split("`CHARGEFLOW_DATABASE_URL`")[1].split("\n")[0]
