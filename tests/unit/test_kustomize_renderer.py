"""The kustomize subset renderer the deployment tests use (tests/support/kustomize.py)
does what ``kustomize build`` does for that subset, and refuses what it does not know."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.kustomize import KustomizeError, render, strategic_merge

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 1,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "chargeflow:0.1.0",
                        "args": ["api"],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "volumeMounts": [{"name": "x", "mountPath": "/x"}],
                    },
                    {"name": "side", "image": "haproxy:3.0.5"},
                ]
            }
        },
    },
}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {}}


def write(directory: Path, files: dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        docs = content if isinstance(content, list) else [content]
        (directory / name).write_text(yaml.safe_dump_all(docs))
    return directory


def kustomization(**fields: object) -> dict[str, object]:
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", **fields}


def test_strategic_merge_by_merge_key_and_replaced_scalar_lists() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "args": ["gateway"],
                            "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}],
                            "volumeMounts": [{"name": "y", "mountPath": "/x"}],
                        }
                    ]
                }
            }
        }
    }
    merged = strategic_merge(DEPLOYMENT, patch)
    app, side = merged["spec"]["template"]["spec"]["containers"]
    assert app["args"] == ["gateway"]
    assert app["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "3"},
        {"name": "C", "value": "4"},
    ]
    assert app["volumeMounts"] == [{"name": "y", "mountPath": "/x"}]
    assert side == {"name": "side", "image": "haproxy:3.0.5"}
    assert DEPLOYMENT["spec"]["replicas"] == 1  # type: ignore[index]  # inputs unchanged


def test_overlay_with_component_images_replicas_labels_and_namespace(tmp_path: Path) -> None:
    write(
        tmp_path / "base",
        {
            "all.yaml": [DEPLOYMENT, SERVICE],
            "kustomization.yaml": kustomization(resources=["all.yaml"]),
        },
    )
    write(
        tmp_path / "comp",
        {
            "kustomization.yaml": {
                "apiVersion": "kustomize.config.k8s.io/v1alpha1",
                "kind": "Component",
                "patches": [{"path": "p.yaml"}],
            },
            "p.yaml": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {
                    "template": {
                        "spec": {
                            "containers": [{"name": "app", "env": [{"name": "T", "value": "1"}]}]
                        }
                    }
                },
            },
        },
    )
    overlay = write(
        tmp_path / "overlay",
        {
            "kustomization.yaml": kustomization(
                namespace="prod",
                resources=["../base"],
                components=["../comp"],
                images=[
                    {"name": "chargeflow", "newName": "reg.example:5000/cf", "newTag": "0.2.0"}
                ],
                replicas=[{"name": "web", "count": 3}],
                labels=[{"pairs": {"team": "ops"}}],
            )
        },
    )
    deployment, service = render(overlay)
    app, side = deployment["spec"]["template"]["spec"]["containers"]
    assert app["image"] == "reg.example:5000/cf:0.2.0"
    assert side["image"] == "haproxy:3.0.5"
    assert [e["name"] for e in app["env"]] == ["A", "B", "T"]
    assert deployment["spec"]["replicas"] == 3
    assert "replicas" not in service["spec"]  # only workloads scale
    assert {r["metadata"]["namespace"] for r in (deployment, service)} == {"prod"}
    assert service["metadata"]["labels"] == {"team": "ops"}


def test_unsupported_fields_and_missing_targets_are_errors(tmp_path: Path) -> None:
    write(tmp_path / "a", {"kustomization.yaml": kustomization(configMapGenerator=[{"name": "x"}])})
    with pytest.raises(KustomizeError, match="configMapGenerator"):
        render(tmp_path / "a")
    write(
        tmp_path / "b",
        {
            "r.yaml": SERVICE,
            "p.yaml": {**DEPLOYMENT, "metadata": {"name": "other"}},
            "kustomization.yaml": kustomization(resources=["r.yaml"], patches=[{"path": "p.yaml"}]),
        },
    )
    with pytest.raises(KustomizeError, match="patch target"):
        render(tmp_path / "b")
    write(
        tmp_path / "c",
        {"r.yaml": [SERVICE, SERVICE], "kustomization.yaml": kustomization(resources=["r.yaml"])},
    )
    with pytest.raises(KustomizeError, match="defined twice"):
        render(tmp_path / "c")
