"""deploy/kubernetes: the base and every overlay render (tests/support/kustomize.py, the
kustomize subset they use), validate against the Kubernetes 1.30 API schemas
(kubernetes-validate, offline, strict), and name only images, variables, secrets,
commands, ports and health endpoints that exist."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import pytest

from tests.support.deploy import (
    FLOW_SCRIPT,
    KUBERNETES,
    KUBERNETES_VERSION,
    entry_problems,
    flow_names,
    health_port,
    pinned,
    process_of,
    project_version,
    unknown_variables,
)
from tests.support.kustomize import Resource, containers, render
from tests.support.paths import ROOT

OVERLAYS = sorted(p.parent.name for p in (KUBERNETES / "overlays").glob("*/kustomization.yaml"))
TARGETS = ["base", *(f"overlays/{o}" for o in OVERLAYS)]


@pytest.fixture(scope="module", params=TARGETS)
def rendered(request: pytest.FixtureRequest) -> list[Resource]:
    return render(KUBERNETES / request.param)


def workloads(resources: list[Resource]) -> Iterator[tuple[Resource, Resource]]:
    for resource in resources:
        for container in containers(resource):
            yield resource, container


def plain_env(container: Resource) -> dict[str, str]:
    """The container's variables with literal values (the ConfigMap's included)."""
    env = {e["name"]: str(e.get("value", "")) for e in container.get("env", [])}
    return env


def full_env(resources: list[Resource], container: Resource) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        [config] = [
            r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == name
        ]
        env.update(config["data"])
    env.update(plain_env(container))
    return env


def argv(container: Resource) -> list[str]:
    return [*(container.get("command") or ["chargeflow"]), *container.get("args", [])]


def pod_spec(resource: Resource) -> Resource:
    spec: Resource = resource["spec"]["template"]["spec"]
    return spec


def test_every_overlay_is_documented_and_every_documented_one_exists() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    documented = set(re.findall(r"deploy/kubernetes/(base|overlays/[\w-]+)", operations))
    assert documented == set(TARGETS)
    assert len(OVERLAYS) >= 2


def test_manifests_validate_against_the_kubernetes_api(rendered: list[Resource]) -> None:
    assert len(rendered) >= 20
    for resource in rendered:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_images_are_pinned_and_ours_is_the_release(rendered: list[Resource]) -> None:
    images = {c["image"] for _, c in workloads(rendered)}
    assert all(pinned(i) for i in images), images
    assert {i.rsplit(":", 1)[1] for i in images} == {project_version()}


def test_variables_exist_and_secret_files_are_mounted(rendered: list[Resource]) -> None:
    for resource, container in workloads(rendered):
        env = full_env(rendered, container)
        assert not unknown_variables(list(env)), (resource["metadata"]["name"], env)
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod_spec(resource).get("volumes", [])}
        for variable, value in env.items():
            if not variable.endswith("_FILE"):
                continue
            directory, key = value.rsplit("/", 1)
            [volume] = [n for n, path in mounts.items() if path == directory]
            items = {i["path"]: i["key"] for i in volumes[volume]["secret"]["items"]}
            assert key in items, (resource["metadata"]["name"], variable)


def test_every_secret_key_is_documented_and_in_the_demo_secret(rendered: list[Resource]) -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    demo = {
        r["metadata"]["name"]: r["stringData"]
        for r in render(KUBERNETES / "overlays" / "demo")
        if r["kind"] == "Secret"
    }
    for resource in rendered:
        if resource["kind"] == "Secret":
            assert resource["metadata"]["namespace"] == "chargeflow-demo"  # only the demo's
        for volume in (
            pod_spec(resource).get("volumes", []) if "template" in resource.get("spec", {}) else []
        ):
            ref = volume.get("secret")
            if ref is None:
                continue
            assert f"`{ref['secretName']}`" in operations
            for item in ref.get("items", []):
                assert item["key"] in demo.get(ref["secretName"], {}), item
                assert f"`{item['key']}`" in operations


def test_commands_exist(rendered: list[Resource]) -> None:
    problems = {
        f"{r['metadata']['name']}/{c['name']}": entry_problems(argv(c))
        for r, c in workloads(rendered)
    }
    assert not {n: p for n, p in problems.items() if p}


def test_probes_and_scrapes_use_the_processes_own_ports_and_paths(
    rendered: list[Resource],
) -> None:
    probed = 0
    for resource, container in workloads(rendered):
        process = process_of(argv(container))
        if process is None:
            assert "readinessProbe" not in container
            continue
        if resource["kind"] == "Job":
            continue
        port = health_port(process, full_env(rendered, container))
        assert port is not None, resource["metadata"]["name"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        tls = "CHARGEFLOW_GATEWAY_TLS_CERT" in plain_env(container)
        for probe, path in (
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/livez"),
        ):
            get = container[probe]["httpGet"]
            assert (get["path"], ports[get["port"]]) == (path, port), resource["metadata"]["name"]
            assert get["path"] in process.health_paths
            assert get["scheme"] == ("HTTPS" if tls else "HTTP")
        annotations = resource["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert int(annotations["prometheus.io/port"]) == port
        assert annotations["prometheus.io/path"] in process.health_paths
        assert annotations.get("prometheus.io/scheme", "http") == ("https" if tls else "http")
        probed += 1
    webhooks = any(r["metadata"]["name"] == "chargeflow-webhooks" for r in rendered)
    # gateway, API, meter bridge, billing worker, aggregates refresher, every flow (and
    # the webhooks worker where it runs)
    assert probed == 5 + len(flow_names()) + webhooks


def test_services_select_pods_and_name_their_ports(rendered: list[Resource]) -> None:
    for service in (r for r in rendered if r["kind"] == "Service"):
        selector = service["spec"]["selector"]
        pods = [
            r
            for r in rendered
            if r["kind"] in ("Deployment", "StatefulSet")
            and selector.items() <= r["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert pods, service["metadata"]["name"]
        named = {p["name"] for r in pods for c in containers(r) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in named, (service["metadata"]["name"], port)
    [gateway] = [
        r
        for r in rendered
        if r["kind"] == "Service" and r["metadata"]["name"] == "chargeflow-gateway"
    ]
    assert gateway["spec"]["type"] == "LoadBalancer"
    assert gateway["spec"]["externalTrafficPolicy"] == "Local"


def test_gateway_replicas_take_their_pod_name_as_replica_id(rendered: list[Resource]) -> None:
    [gateway] = [
        r
        for r in rendered
        if r["kind"] == "Deployment" and r["metadata"]["name"] == "chargeflow-gateway"
    ]
    [container] = containers(gateway)
    [replica] = [e for e in container["env"] if e["name"] == "CHARGEFLOW_GATEWAY_ID"]
    assert replica["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert gateway["spec"]["replicas"] >= 2


def test_every_flow_is_a_statefulset_cluster_with_recovery_storage(
    rendered: list[Resource],
) -> None:
    sets = {r["metadata"]["name"]: r for r in rendered if r["kind"] == "StatefulSet"}
    services = {r["metadata"]["name"]: r for r in rendered if r["kind"] == "Service"}
    for flow in flow_names():
        # Kubernetes names are DNS labels: no underscore.
        sts = sets[f"chargeflow-flow-{flow.replace('_', '-')}"]
        spec = sts["spec"]
        [container] = containers(sts)
        env = {e["name"]: e for e in container["env"]}
        assert argv(container)[:2] == [FLOW_SCRIPT, flow]
        replicas = spec["replicas"]
        cluster_port = next(
            p["containerPort"] for p in container["ports"] if p["name"] == "cluster"
        )
        name, headless = sts["metadata"]["name"], spec["serviceName"]
        assert env["BYTEWAX_ADDRESSES"]["value"].split(";") == [
            f"{name}-{i}.{headless}:{cluster_port}" for i in range(replicas)
        ]
        assert services[headless]["spec"]["clusterIP"] == "None"
        assert services[headless]["spec"]["publishNotReadyAddresses"] is True
        assert env["BYTEWAX_PROCESS_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.labels['apps.kubernetes.io/pod-index']"
        )
        assert int(argv(container)[2]) >= replicas  # recovery partitions
        assert env["CHARGEFLOW_FLOW_SINK_PARTITIONS"]["value"] == str(replicas)
        assert spec["podManagementPolicy"] == "Parallel"
        [claim] = spec["volumeClaimTemplates"]
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts[claim["metadata"]["name"]] == env["BYTEWAX_RECOVERY_DIRECTORY"]["value"]


def test_the_setup_job_is_named_after_the_release(rendered: list[Resource]) -> None:
    [job] = [r for r in rendered if r["kind"] == "Job"]
    assert job["metadata"]["name"] == "chargeflow-setup-" + project_version().replace(".", "-")
    steps = [argv(c) for c in containers(job)]
    assert steps == [["chargeflow", "migrate"], ["chargeflow", "topics"]]


def test_pods_run_as_the_image_user_without_privileges(rendered: list[Resource]) -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    [user] = re.findall(r"^USER (\d+):\d+$", dockerfile, re.M)
    for resource in rendered:
        if "template" not in resource.get("spec", {}):
            continue
        assert pod_spec(resource)["securityContext"]["runAsUser"] == int(user)
        assert pod_spec(resource)["securityContext"]["runAsNonRoot"] is True
        for container in containers(resource):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_production_differs_from_base_as_documented() -> None:
    base = {(r["kind"], r["metadata"]["name"]): r for r in render(KUBERNETES / "base")}
    production = {
        (r["kind"], r["metadata"]["name"]): r
        for r in render(KUBERNETES / "overlays" / "production")
    }
    webhooks = {
        ("Deployment", "chargeflow-webhooks"),
        ("PodDisruptionBudget", "chargeflow-webhooks"),
    }
    assert production.keys() == base.keys() | webhooks
    assert production["Deployment", "chargeflow-webhooks"]["spec"]["replicas"] == 2
    assert production["Deployment", "chargeflow-gateway"]["spec"]["replicas"] == 4
    assert production["Deployment", "chargeflow-api"]["spec"]["replicas"] == 3
    assert production["StatefulSet", "chargeflow-flow-sessions"]["spec"]["replicas"] == 4
    assert production["StatefulSet", "chargeflow-flow-status"]["spec"]["replicas"] == 2
    assert all(r["metadata"]["namespace"] == "chargeflow" for r in production.values())


def test_no_secret_value_outside_the_demo() -> None:
    values = [
        (ROOT / "deploy" / "secrets" / name).read_text().strip()
        for name in ("database_url", "gateway_auth_cache_key", "postgres_password")
    ]
    for path in KUBERNETES.rglob("*.yaml"):
        if path.parent.name == "demo":
            continue
        text = path.read_text()
        assert not [v for v in values if v in text], path


def _unused(path: Path) -> bool:
    return path.name != "kustomization.yaml" and path.name not in "".join(
        p.read_text() for p in path.parent.glob("kustomization.yaml")
    )


def test_every_manifest_file_is_used() -> None:
    assert not [p for p in KUBERNETES.rglob("*.yaml") if _unused(p)]
