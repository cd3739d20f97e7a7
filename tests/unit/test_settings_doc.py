"""docs/configuration.md is generated from the settings models and kept in sync."""

from __future__ import annotations

import re

from chargeflow import settings_doc
from runtime.settings import env_name
from tests.support.paths import ROOT

PACKAGES = (
    "chargeflow",
    "runtime",
    "bus",
    "ingest",
    "flows",
    "store",
    "api",
    "notify",
    "bench",
    "models",
    "billing",
)
# A variable's name in the source; ``CHARGEFLOW_GATEWAY_*`` (a family) does not count.
VARIABLE = re.compile(r"CHARGEFLOW_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_*])")


def test_configuration_doc_is_up_to_date() -> None:
    committed = settings_doc.DOC_PATH.read_text()
    assert committed == settings_doc.render(), (
        f"docs/configuration.md is out of date: run `{settings_doc.REGENERATE}`"
    )


def test_every_setting_of_every_process_is_in_the_doc() -> None:
    text = settings_doc.render()
    for _, _, model in settings_doc.PROCESSES:
        for name in model.model_fields:
            assert f"`{env_name(name)}`" in text, name
    assert "**secret**" in text.split("`CHARGEFLOW_DATABASE_URL`")[1].split("\n")[0]


def test_every_variable_the_code_names_is_documented() -> None:
    doc = settings_doc.DOC_PATH.read_text()
    named: dict[str, str] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in VARIABLE.findall(path.read_text()):
                named.setdefault(name, str(path.relative_to(ROOT)))
    assert "CHARGEFLOW_DATABASE_URL" in named
    missing = {name: where for name, where in named.items() if f"`{name}`" not in doc}
    assert not missing, (
        f"variables not in docs/configuration.md: {missing}; add them to a "
        f"settings model and run `{settings_doc.REGENERATE}`"
    )


def test_unknown_variables_are_the_ones_nothing_reads() -> None:
    environ = {
        "CHARGEFLOW_GATEWAY_PORT": "1",
        "CHARGEFLOW_GATEWAY_PROT": "1",
        "CHARGEFLOW_STATION_PASSWORD": "x",
        "CHARGEFLOW_TEST_DATABASE_URL": "x",
        "PATH": "/bin",
    }
    assert settings_doc.unknown_variables(environ) == ["CHARGEFLOW_GATEWAY_PROT"]
