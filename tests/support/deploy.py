"""What the deployment files (deploy/) are checked against, taken from the code itself:
the settings' variables, Bytewax's variables, the CLI's commands, each process's health
endpoints and ports. No Docker engine or cluster runs here, so the checks are static."""

from __future__ import annotations

import importlib
import importlib.util
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import typer.main
import yaml

from tests.support.paths import ROOT

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
FLOW_SCRIPT = "chargeflow-flow"  # deploy/docker/chargeflow-flow, in the image's PATH
KUBERNETES_VERSION = "1.30.0"
# A pinned image tag names a release: at least major.minor, never "latest".
PINNED_TAG = re.compile(r"^v?\d+\.\d+(\.\d+)?([.-][A-Za-z0-9.]+)*$")


@cache
def project_version() -> str:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return str(data["project"]["version"])


@cache
def chargeflow_variables() -> frozenset[str]:
    """Every CHARGEFLOW_* variable a settings model (or a CLI option) reads."""
    from chargeflow.settings_doc import known_variables

    return frozenset(known_variables())


@cache
def bytewax_variables() -> frozenset[str]:
    """The variables ``bytewax.run`` reads for its options: the ``[env: X]`` of its
    ``--help`` (its scaling options exist only inside its argument parsing)."""
    import contextlib
    import io
    import sys

    from bytewax.run import _parse_args

    out = io.StringIO()
    saved = sys.argv
    sys.argv = ["bytewax.run", "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            _parse_args()
    finally:
        sys.argv = saved
    found = set(re.findall(r"\[env:\s+(BYTEWAX_\w+)\]", out.getvalue()))
    assert "BYTEWAX_ADDRESSES" in found, found
    return frozenset(found)


def unknown_variables(names: Sequence[str]) -> list[str]:
    """The chargeflow and Bytewax variables among ``names`` that nothing reads."""
    return sorted(
        name
        for name in names
        if (name.startswith("CHARGEFLOW_") and name not in chargeflow_variables())
        or (name.startswith("BYTEWAX_") and name not in bytewax_variables())
    )


@cache
def cli() -> Any:
    from chargeflow.cli import app

    return typer.main.get_command(app)


def cli_command(argv: Sequence[str]) -> Any:
    """The ``chargeflow`` (sub)command ``argv`` runs, None if there is none."""
    command = cli()
    for word in argv:
        commands = getattr(command, "commands", None)  # a group (typer vendors click)
        if commands is None:
            return command
        command = commands.get(word)
        if command is None:
            return None
    return None if hasattr(command, "commands") else command


def flow_names() -> tuple[str, ...]:
    from chargeflow.launcher import FLOWS

    return FLOWS


def flow_has_entry(name: str) -> bool:
    module = f"flows.{name}.dataflow"
    if importlib.util.find_spec(module) is None:
        return False
    return callable(getattr(importlib.import_module(module), "from_env", None))


@dataclass(frozen=True)
class Process:
    """What a container runs: its kind, health paths and the port they are served on."""

    kind: str
    health_paths: frozenset[str]
    port_variable: str | None
    default_port: int | None


@cache
def _health_server_paths() -> frozenset[str]:
    from runtime.health import HealthServer

    server = HealthServer(host="127.0.0.1", port=0, name="paths")
    return frozenset(str(getattr(route, "path", "")) for route in server.app.routes)


def _default(model: str, field: str) -> int | None:
    module, name = model.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    value = cls.model_fields[field].default
    return None if value is None else int(value)


def process_of(argv: Sequence[str]) -> Process | None:
    """The process a container's full argv (entrypoint + command) starts."""
    from api.routers.health import router
    from ingest.gateway.server import HTTP_ENDPOINTS

    if not argv:
        return None
    if argv[0] == FLOW_SCRIPT:
        return Process("flow", _health_server_paths(), "CHARGEFLOW_FLOW_METRICS_PORT", None)
    if argv[:3] == ["python", "-m", "store.aggregates"]:
        return Process(
            "aggregates",
            _health_server_paths(),
            "CHARGEFLOW_AGGREGATES_HTTP_PORT",
            _default("store.refresher.AggregatesSettings", "aggregates_http_port"),
        )
    if argv[0] != "chargeflow" or len(argv) < 2:
        return None
    api_paths = frozenset(str(getattr(r, "path", "")) for r in router.routes)
    kinds = {
        "gateway": Process(
            "gateway",
            HTTP_ENDPOINTS,
            "CHARGEFLOW_GATEWAY_PORT",
            _default("ingest.gateway.settings.GatewaySettings", "gateway_port"),
        ),
        "api": Process(
            "api",
            api_paths,
            "CHARGEFLOW_API_PORT",
            _default("api.settings.ApiSettings", "api_port"),
        ),
        "meters": Process(
            "meters",
            _health_server_paths(),
            "CHARGEFLOW_METERS_HTTP_PORT",
            _default("ingest.meters.settings.MeterBridgeSettings", "meters_http_port"),
        ),
        "webhooks": Process(
            "webhooks",
            _health_server_paths(),
            "CHARGEFLOW_WEBHOOKS_HTTP_PORT",
            _default("notify.settings.WebhooksSettings", "webhooks_http_port"),
        ),
        "billing": Process(
            "billing",
            _health_server_paths(),
            "CHARGEFLOW_BILLING_HTTP_PORT",
            _default("invoicing.settings.InvoicingSettings", "billing_http_port"),
        ),
    }
    return kinds.get(argv[1])


def health_port(process: Process, env: Mapping[str, str]) -> int | None:
    """The port ``process`` serves its health endpoints on with ``env``."""
    if process.port_variable is None:
        return None
    value = env.get(process.port_variable)
    if value is None:
        return process.default_port
    port = int(value)
    if process.kind == "flow" and env.get("CHARGEFLOW_FLOW_METRICS_PORT_PER_PROCESS") != "false":
        return None  # port + process id: differs between the processes of one cluster
    return port


def entry_problems(argv: Sequence[str]) -> list[str]:
    """Why ``argv`` (entrypoint + command of a chargeflow container) would not start."""
    if not argv:
        return ["no command"]
    if argv[0] == "chargeflow":
        return [] if cli_command(argv[1:]) is not None else [f"no chargeflow command {argv[1:]}"]
    if argv[0] == FLOW_SCRIPT:
        if len(argv) != 3 or not argv[2].isdigit():
            return [f"usage: {FLOW_SCRIPT} FLOW PARTITIONS, got {argv[1:]}"]
        return [] if flow_has_entry(argv[1]) else [f"no flow {argv[1]!r} with from_env()"]
    if argv[:2] == ["python", "-m"] and len(argv) > 2:
        spec = importlib.util.find_spec(argv[2])
        return [] if spec is not None else [f"no module {argv[2]}"]
    return [f"unknown entry {argv[0]}"]


def read_env_file(path: Path) -> dict[str, str]:
    """A compose env file: KEY=VALUE lines, # comments; quotes around a value removed."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def pinned(image: str) -> bool:
    from tests.support.kustomize import split_image

    _, tag = split_image(image)
    return tag is not None and bool(PINNED_TAG.match(tag))
