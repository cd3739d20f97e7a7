"""deploy/compose.yaml, checked statically (no Docker engine here): it parses, and every
image, variable, secret, command, port and health endpoint it names exists in the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.deploy import (
    COMPOSE,
    DEPLOY,
    FLOW_SCRIPT,
    entry_problems,
    flow_names,
    health_port,
    load_yaml,
    pinned,
    process_of,
    project_version,
    read_env_file,
    unknown_variables,
)
from tests.support.paths import ROOT

IMAGE = f"chargeflow:{project_version()}"
PROBE_URL = re.compile(r"urlopen\('(http://[^']+)'")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def ours(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services.items() if s.get("image") == IMAGE}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for file in service.get("env_file", []):
        env.update(read_env_file(DEPLOY / file))
    env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    return env


def argv(service: dict[str, Any]) -> list[str]:
    entry = service.get("entrypoint") or ["chargeflow"]  # the image's ENTRYPOINT
    return [str(a) for a in [*entry, *service.get("command", [])]]


def test_images_are_pinned_and_ours_is_built_from_the_dockerfile(
    services: dict[str, dict[str, Any]],
) -> None:
    loose = [
        f"{n}: {s.get('image')}" for n, s in services.items() if not pinned(s.get("image", ""))
    ]
    assert not loose, loose
    built = ours(services)
    assert len(built) >= 20
    for name, service in built.items():
        build = service["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file(), name
    official = {s["image"].split(":")[0] for s in services.values()} - {"chargeflow"}
    assert {"apache/kafka", "timescale/timescaledb", "grafana/grafana"} <= official
    assert services["grafana"]["image"].startswith("grafana/grafana:11.6.")


def test_every_variable_is_one_the_settings_or_bytewax_read(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in ours(services).items():
        env = environment(service)
        assert not unknown_variables(list(env)), (name, unknown_variables(list(env)))
        assert "CHARGEFLOW_DATABASE_URL_FILE" in env, name


def test_secret_files_come_from_declared_secrets(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = compose["secrets"]
    for name, secret in declared.items():
        path = DEPLOY / secret["file"]
        assert path.read_text().strip(), name
    for name, service in services.items():
        env = environment(service)
        mounted = set(service.get("secrets", []))
        assert mounted <= set(declared), name
        for variable, value in env.items():
            if variable.endswith("_FILE") or variable.endswith("__FILE"):
                assert value.startswith("/run/secrets/"), (name, variable)
                assert value.removeprefix("/run/secrets/") in mounted, (name, variable)
        for value in env.values():  # Grafana's $__file{...}
            for path in re.findall(r"\$__file\{(/run/secrets/[^}]+)\}", value):
                assert path.removeprefix("/run/secrets/") in mounted, (name, path)


def test_the_database_secrets_agree() -> None:
    secrets = DEPLOY / "secrets"
    url = urlsplit((secrets / "database_url").read_text().strip())
    assert url.password == (secrets / "postgres_password").read_text().strip()
    assert (url.hostname, url.port, url.path) == ("timescaledb", 5432, "/chargeflow")
    db = load_yaml(COMPOSE)["services"]["timescaledb"]["environment"]
    assert (url.username, url.path.lstrip("/")) == (db["POSTGRES_USER"], db["POSTGRES_DB"])


def test_every_command_exists(services: dict[str, dict[str, Any]]) -> None:
    problems = {name: entry_problems(argv(s)) for name, s in ours(services).items()}
    assert not {n: p for n, p in problems.items() if p}
    assert (ROOT / "deploy" / "docker" / FLOW_SCRIPT).is_file()


def test_health_checks_probe_the_processes_own_port_and_paths(
    services: dict[str, dict[str, Any]],
) -> None:
    probed = 0
    for name, service in ours(services).items():
        process = process_of(argv(service))
        check = service.get("healthcheck")
        if process is None:
            assert check is None, f"{name}: a health check on a process without an endpoint"
            continue
        assert check is not None, f"{name} serves health endpoints but has no health check"
        [url] = PROBE_URL.findall(" ".join(check["test"]))
        parts = urlsplit(url)
        assert parts.port == health_port(process, environment(service)), name
        assert parts.path in process.health_paths, name
        assert parts.path == "/readyz", name
        probed += 1
    assert probed >= 15


def test_haproxy_balances_the_replicas_on_their_ports(
    services: dict[str, dict[str, Any]],
) -> None:
    cfg = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    backends = dict(re.findall(r"^backend (\w+)\n(.*?)(?=^\S|\Z)", cfg, re.M | re.S))
    assert set(backends) == {"gateways", "apis"}
    for backend, kind, replicas in (("gateways", "gateway", 2), ("apis", "api", 2)):
        body = backends[backend]
        servers = re.findall(r"server \S+ ([\w-]+):(\d+) check", body)
        assert len(servers) == replicas, backend
        [path] = re.findall(r"option httpchk GET (\S+)", body)
        for host, port in servers:
            process = process_of(argv(services[host]))
            assert process is not None, host
            assert process.kind == kind, host
            assert int(port) == health_port(process, environment(services[host]))
            assert path in process.health_paths
    binds = {int(p) for p in re.findall(r"^\s+bind :(\d+)", cfg, re.M)}
    published = {int(p.split(":")[1]) for p in services["lb"]["ports"]}
    assert binds == published
    ids = [environment(services[f"gateway-{i}"])["CHARGEFLOW_GATEWAY_ID"] for i in (1, 2)]
    assert len(set(ids)) == 2


def test_every_flow_is_a_cluster_with_a_volume_per_process(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    for flow in flow_names():
        members = sorted(n for n, s in ours(services).items() if argv(s)[:2] == [FLOW_SCRIPT, flow])
        assert len(members) >= 2, flow
        volumes: set[str] = set()
        for index, name in enumerate(members):
            service = services[name]
            env = environment(service)
            addresses = env["BYTEWAX_ADDRESSES"].split(";")
            assert [a.split(":")[0] for a in addresses] == members, flow
            assert env["BYTEWAX_PROCESS_ID"] == str(index)
            assert int(argv(service)[2]) >= len(members)  # recovery partitions
            assert env["CHARGEFLOW_FLOW_SINK_PARTITIONS"] == str(len(members))
            [volume] = [
                v.split(":")[0]
                for v in service["volumes"]
                if v.split(":")[1] == env["BYTEWAX_RECOVERY_DIRECTORY"]
            ]
            assert volume in compose["volumes"]
            volumes.add(volume)
        assert len(volumes) == len(members), f"{flow}: processes share a recovery volume"


def test_depends_on_names_services_and_one_shots_run_once(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert set(depends) <= set(services), name
    for one_shot in ("migrate", "topics", "dashboards-export", "demo-seed"):
        assert services[one_shot]["restart"] == "no"
    assert services["simulator"]["profiles"] == ["demo"]


def test_grafana_gets_the_provisioning_and_the_exported_dashboards(
    services: dict[str, dict[str, Any]],
) -> None:
    """The dashboards' contract: provisioning files, their provider path, `dashboards
    export` (the dashboards branch provides them)."""
    provisioning = ROOT / "dashboards" / "provisioning"
    grafana = services["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    assert (COMPOSE.parent / "../dashboards/provisioning").resolve() == provisioning
    assert mounts["../dashboards/provisioning"] == "/etc/grafana/provisioning"
    assert (provisioning / "datasources" / "chargeflow.yaml").is_file()
    [provider] = yaml.safe_load((provisioning / "dashboards" / "chargeflow.yaml").read_text())[
        "providers"
    ]
    volume = next(src for src, target in mounts.items() if target == provider["options"]["path"])
    export = services["dashboards-export"]
    assert argv(export)[:3] == ["chargeflow", "dashboards", "export"]
    assert entry_problems(argv(export)) == []
    assert f"{volume}:{argv(export)[3]}" in export["volumes"]
    env = environment(grafana)
    datasource = (provisioning / "datasources" / "chargeflow.yaml").read_text()
    wanted = set(re.findall(r"\$\{(\w+)\}", datasource))
    assert wanted
    assert wanted <= set(env), wanted - set(env)


def test_the_env_files_are_all_used() -> None:
    compose_text = COMPOSE.read_text()
    unused = [
        p.name for p in Path(DEPLOY / "env").glob("*.env") if f"env/{p.name}" not in compose_text
    ]
    assert not unused
