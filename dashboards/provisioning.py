"""The provisioning files (``dashboards/provisioning/``) as data: the one definition of
the datasource and the dashboards' folder, read by the publisher too, with Grafana's
``${VAR}`` environment references resolved the way Grafana resolves them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent / "provisioning"
DATASOURCES_FILE = ROOT / "datasources" / "chargeflow.yaml"
DASHBOARDS_FILE = ROOT / "dashboards" / "chargeflow.yaml"
DB_ENV = (
    "CHARGEFLOW_GRAFANA_DB_HOST",
    "CHARGEFLOW_GRAFANA_DB_PORT",
    "CHARGEFLOW_GRAFANA_DB_NAME",
    "CHARGEFLOW_GRAFANA_DB_USER",
    "CHARGEFLOW_GRAFANA_DB_PASSWORD",
    "CHARGEFLOW_GRAFANA_DB_SSLMODE",
)
_REFERENCE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


class ProvisioningError(ValueError):
    """The environment lacks a variable the datasource needs."""


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data


def datasource_template() -> dict[str, Any]:
    """The datasource as the file says, references unresolved."""
    (datasource,) = _load(DATASOURCES_FILE)["datasources"]
    return dict(datasource)


def provider() -> dict[str, Any]:
    (entry,) = _load(DASHBOARDS_FILE)["providers"]
    return dict(entry)


def env_references(value: Any) -> set[str]:
    """The environment variables ``value`` (the file's data) refers to."""
    if isinstance(value, str):
        return {a or b for a, b in _REFERENCE.findall(value)}
    if isinstance(value, Mapping):
        return set().union(*(env_references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(env_references(v) for v in value))
    return set()


def _resolve(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _REFERENCE.sub(lambda m: env[m.group(1) or m.group(2)], value)
    if isinstance(value, Mapping):
        return {k: _resolve(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, env) for v in value]
    return value


def datasource_body(env: Mapping[str, str]) -> dict[str, Any]:
    """The datasource for Grafana's HTTP API (``POST /api/datasources``), its
    connection taken from ``env``; names the missing variables, never their values."""
    template = datasource_template()
    missing = sorted(name for name in env_references(template) if not env.get(name))
    if missing:
        raise ProvisioningError(
            "the datasource needs " + ", ".join(missing) + " (see docs/dashboards.md)"
        )
    body = dict(_resolve(template, env))
    body.pop("editable", None)  # a provisioning option, not a field of the API
    return body
