"""Render docs/configuration.md from the settings models: ``python -m chargeflow.settings_doc``.

``--check`` exits 1 when the committed file differs (tests/unit/test_settings_doc.py
runs the same comparison)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import typer.main
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from api.settings import ApiSettings
from billing.payments.settings import StripeSettings
from chargeflow.cli import app
from chargeflow.settings import Settings
from flows.settings import (
    FaultsFlowSettings,
    FlowSettings,
    LoadFlowSettings,
    MessagesFlowSettings,
    SessionsFlowSettings,
    SmartChargingFlowSettings,
)
from ingest.gateway.settings import GatewaySettings
from ingest.meters.settings import MeterBridgeSettings
from ingest.simulator.settings import SimulatorSettings
from invoicing.settings import InvoicingSettings
from notify.settings import WebhooksSettings
from runtime.settings import ENV_PREFIX, SHARED_PARTS, env_name, file_variable
from store.refresher import AggregatesSettings

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
REGENERATE = "python -m chargeflow.settings_doc"

# (title, how it is started, model): every process's settings model.
PROCESSES: list[tuple[str, str, type[BaseSettings]]] = [
    ("Gateway", "chargeflow gateway", GatewaySettings),
    ("API", "chargeflow api, python -m api", ApiSettings),
    ("Meter bridge", "chargeflow meters", MeterBridgeSettings),
    (
        "Flows (sessions, load, status, faults, messages)",
        'python -m flows.run "flows.<name>.dataflow:from_env()"',
        FlowSettings,
    ),
    (
        "Sessions flow",
        'python -m flows.run "flows.sessions.dataflow:from_env()"',
        SessionsFlowSettings,
    ),
    ("Load flow", 'python -m flows.run "flows.load.dataflow:from_env()"', LoadFlowSettings),
    ("Faults flow", 'python -m flows.run "flows.faults.dataflow:from_env()"', FaultsFlowSettings),
    (
        "Messages flow",
        'python -m flows.run "flows.messages.dataflow:from_env()"',
        MessagesFlowSettings,
    ),
    (
        "Smart-charging flow",
        'python -m flows.run "flows.smart_charging.dataflow:from_env()"',
        SmartChargingFlowSettings,
    ),
    ("Simulator", "chargeflow simulate (its options win)", SimulatorSettings),
    ("Aggregates refresher", "python -m store.aggregates", AggregatesSettings),
    ("Webhooks worker", "chargeflow webhooks", WebhooksSettings),
    ("Billing worker", "chargeflow billing", InvoicingSettings),
    ("Stripe payments", "StripeSettings.load().provider()", StripeSettings),
    ("Launcher and CLI", "chargeflow run, chargeflow <admin command>", Settings),
]

# Variables outside the settings models: tools and test harnesses.
OTHER_VARIABLES: list[tuple[str, str, str]] = [
    (
        "CHARGEFLOW_AMQTT_BIN",
        "unset",
        "the amqtt broker binary `chargeflow run` falls back "
        "to where mosquitto is not installed (default: `.venv-mqtt/bin/amqtt`, then `PATH`)",
    ),
    (
        "CHARGEFLOW_TEST_DATABASE_URL",
        "unset",
        "server the test suite creates its databases "
        "on (default: 127.0.0.1:5432, else an embedded one)",
    ),
    (
        "CHARGEFLOW_BENCH_DATABASE_URL",
        "unset",
        "server the benches create their databases on (same default)",
    ),
]


def cli_option_variables() -> list[tuple[str, str, str]]:
    """``chargeflow`` command options that may come from a variable (typer ``envvar``)."""
    found: list[tuple[str, str, str]] = []

    def walk(command: Any, path: list[str]) -> None:
        for param in command.params:
            envvars = param.envvar if isinstance(param.envvar, list) else [param.envvar]
            for envvar in filter(None, envvars):
                option = "--" + param.name.replace("_", "-")
                found.append(
                    (envvar, "unset", f"`{' '.join(path)} {option}`: {getattr(param, 'help', '')}")
                )
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), ["chargeflow"])
    return found


def known_variables() -> set[str]:
    """Every ``CHARGEFLOW_*`` variable some part of chargeflow reads."""
    fields = {name for _, _, model in PROCESSES for name in model.model_fields}
    names = {env_name(name) for name in fields} | {file_variable(name) for name in fields}
    names.update(name for name, _, _ in [*cli_option_variables(), *OTHER_VARIABLES])
    return names


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``CHARGEFLOW_*`` variables in ``environ`` that nothing reads (typos, most often)."""
    known = known_variables()
    return sorted(n for n in environ if n.startswith(ENV_PREFIX) and n not in known)


HEADER = f"""# Configuration

<!-- Generated by `{REGENERATE}` from the settings models; do not edit. -->

Every process reads its settings the same way: `CHARGEFLOW_*` environment variables,
then a `.env` file in its working directory (the environment wins), then the defaults
below. `chargeflow run` passes its environment on to the processes it starts. A bad
value stops the process with one line naming the variable. Secrets (marked **secret**)
are never printed, in logs, `repr` or errors.

Any setting can instead be read from a file: `CHARGEFLOW_<NAME>_FILE=/run/secrets/name`
(Docker and Kubernetes secrets, e.g. `CHARGEFLOW_DATABASE_URL_FILE`; one trailing newline
is dropped, list and object settings are JSON). Setting both `CHARGEFLOW_<NAME>` and
`CHARGEFLOW_<NAME>_FILE` is an error.

Values: booleans `true`/`false`, lists and sets as JSON (`["a", "b"]`). How to add a
setting: the docstring of `runtime/settings.py`.
"""


def _is_secret(info: FieldInfo) -> bool:
    annotation = info.annotation
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return "(computed)"
    value: Any = info.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, (frozenset, set, tuple, list)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else list(value)
        return f"`{json.dumps(items)}`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(name: str, info: FieldInfo, extra: str = "") -> str:
    description = info.description or ""
    if _is_secret(info):
        description = "**secret**. " + description
    cells = [f"`{env_name(name)}`", _default(info), _cell(description)]
    if extra:
        cells.append(extra)
    return "| " + " | ".join(cells) + " |"


def render() -> str:
    out = [HEADER]
    out += [
        "## Shared",
        "",
        "Read by every process that needs them.",
        "",
        "| Variable | Default | Description | Read by |",
        "|---|---|---|---|",
    ]
    for part in SHARED_PARTS:
        for name, info in part.model_fields.items():
            models = [model for _, _, model in PROCESSES if issubclass(model, part)]
            users = [
                title
                for title, _, model in PROCESSES
                if model in models
                and not any(m is not model and issubclass(model, m) for m in models)
            ]
            out.append(_row(name, info, ", ".join(users)))
    out.append("")
    listed = {name for part in SHARED_PARTS for name in part.model_fields}
    for title, command, model in PROCESSES:
        rows = [_row(name, info) for name, info in model.model_fields.items() if name not in listed]
        listed.update(model.model_fields)
        if not rows:
            continue
        out += [
            f"## {title}",
            "",
            f"`{command}` (`{model.__module__}.{model.__name__}`)",
            "",
            "| Variable | Default | Description |",
            "|---|---|---|",
            *rows,
            "",
        ]
    out += [
        "## Command options and tools",
        "",
        "| Variable | Default | Description |",
        "|---|---|---|",
    ]
    for name, default, description in [*cli_option_variables(), *OTHER_VARIABLES]:
        out.append(f"| `{name}` | {default} | {_cell(description)} |")
    out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=REGENERATE, description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if docs/configuration.md is out of date"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is out of date: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.write_text(text)
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
