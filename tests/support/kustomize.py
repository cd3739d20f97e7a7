"""A renderer of the kustomize subset deploy/kubernetes uses (no kubectl here).

Supported, as ``kustomize build`` does them: ``resources`` (files and directories with a
kustomization), ``components`` (``kind: Component``), ``namespace``, ``labels`` (pairs
on every resource's metadata only: no ``includeSelectors``/``includeTemplates``),
``images`` (``name`` -> ``newName``/``newTag``), ``replicas`` (``name``, ``count``) and
``patches`` given by ``path`` (strategic merge patches, matched by kind and name).
Anything else in a kustomization is an error, never silently skipped, so the
manifests cannot come to rely on a feature this renderer gets wrong.

Strategic merge, as Kubernetes defines it for the fields used here: maps merge key by
key; lists of maps merge on their merge key (``name``; ``mountPath`` for
``volumeMounts``; ``containerPort`` for container ``ports``, ``port`` for Service
``ports``); other lists are replaced.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

KINDS = ("Kustomization", "Component")
SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "labels",
    "images",
    "replicas",
    "patches",
}
# Kinds that live in no namespace (the ones this project could use).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass"}
MERGE_KEYS = {"volumeMounts": "mountPath"}
# What kustomize's replicas field changes.
SCALABLE = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet"}


class KustomizeError(ValueError):
    """A kustomization this renderer cannot render as kustomize would."""


def load_documents(path: Path) -> list[Resource]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc:
            raise KustomizeError(f"{path}: not a Kubernetes object: {doc!r:.80}")
    return docs


def _kustomization(directory: Path) -> Resource:
    file = directory / "kustomization.yaml"
    if not file.is_file():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    [spec] = load_documents(file)
    if spec.get("kind") not in KINDS:
        raise KustomizeError(f"{file}: kind {spec.get('kind')!r} is not one of {KINDS}")
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{file}: fields this renderer does not support: {sorted(unknown)}")
    return spec


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field in MERGE_KEYS:
        return MERGE_KEYS[field]
    if not items or not all(isinstance(i, dict) for i in items):
        return None
    for key in ("name", "containerPort", "port"):
        if all(key in i for i in items):
            return key
    return None


def strategic_merge(target: Any, patch: Any, field: str = "") -> Any:
    """``patch`` merged into ``target`` (a new object; neither argument changes)."""
    if isinstance(target, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(target)
        for key, value in patch.items():
            merged[key] = strategic_merge(merged[key], value, key) if key in merged else value
        return copy.deepcopy(merged)
    if isinstance(target, list) and isinstance(patch, list):
        key = _merge_key(field, target + patch)
        if key is None:
            return copy.deepcopy(patch)
        merged_list = copy.deepcopy(target)
        for item in patch:
            found = next((i for i, t in enumerate(merged_list) if t[key] == item[key]), None)
            if found is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[found] = strategic_merge(merged_list[found], item, field)
        return merged_list
    return copy.deepcopy(patch)


def _identity(resource: Resource) -> tuple[str, str]:
    return str(resource["kind"]), str(resource["metadata"]["name"])


def _pod_spec(resource: Resource) -> Resource | None:
    spec = resource.get("spec", {})
    if resource["kind"] in WORKLOADS:
        template: Resource = spec.get("template", {})
        pod: Resource | None = template.get("spec")
        return pod
    return None


def containers(resource: Resource) -> Iterator[Resource]:
    """The containers and init containers of a workload (none for other kinds)."""
    pod = _pod_spec(resource)
    if pod is not None:
        yield from pod.get("initContainers", [])
        yield from pod.get("containers", [])


def split_image(image: str) -> tuple[str, str | None]:
    """(name, tag); a registry's port is not a tag.

    >>> split_image("registry.example.com:5000/chargeflow:0.1.0"), split_image("haproxy")
    (('registry.example.com:5000/chargeflow', '0.1.0'), ('haproxy', None))
    """
    if ":" in image.rsplit("/", 1)[-1]:
        name, tag = image.rsplit(":", 1)
        return name, tag
    return image, None


def _apply_images(resources: list[Resource], images: list[Resource]) -> None:
    for rule in images:
        for resource in resources:
            for container in containers(resource):
                name, tag = split_image(container["image"])
                if name != rule["name"]:
                    continue
                new_name = rule.get("newName", name)
                new_tag = rule.get("newTag", tag)
                container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def _apply_replicas(resources: list[Resource], rules: list[Resource]) -> None:
    for rule in rules:
        matched = [
            r for r in resources if r["metadata"]["name"] == rule["name"] and r["kind"] in SCALABLE
        ]
        if not matched:
            raise KustomizeError(f"replicas: no resource named {rule['name']!r}")
        for resource in matched:
            resource["spec"]["replicas"] = int(rule["count"])


def _apply_patches(directory: Path, resources: list[Resource], patches: list[Resource]) -> None:
    for entry in patches:
        if set(entry) != {"path"}:
            raise KustomizeError(f"{directory}: only patches by path are supported: {entry}")
        for patch in load_documents(directory / entry["path"]):
            index = next(
                (i for i, r in enumerate(resources) if _identity(r) == _identity(patch)), None
            )
            if index is None:
                raise KustomizeError(f"{directory}: patch target {_identity(patch)} not found")
            resources[index] = strategic_merge(resources[index], patch)


def render(directory: Path) -> list[Resource]:
    """The resources ``kustomize build directory`` gives, in order."""
    spec = _kustomization(directory)
    if spec["kind"] != "Kustomization":
        raise KustomizeError(f"{directory}: a Component is used under components, not built")
    resources: list[Resource] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        resources += render(path) if path.is_dir() else load_documents(path)
    for entry in spec.get("components", []):
        component = (directory / entry).resolve()
        if _kustomization(component)["kind"] != "Component":
            raise KustomizeError(f"{component} is not a Component")
        resources = _apply_component(component, resources)
    seen: set[tuple[str, str]] = set()
    for resource in resources:
        if _identity(resource) in seen:
            raise KustomizeError(f"{directory}: {_identity(resource)} defined twice")
        seen.add(_identity(resource))
    _apply_patches(directory, resources, spec.get("patches", []))
    _apply_images(resources, spec.get("images", []))
    _apply_replicas(resources, spec.get("replicas", []))
    for pairs in spec.get("labels", []):
        if set(pairs) != {"pairs"}:
            raise KustomizeError(f"{directory}: labels support only pairs: {pairs}")
        for resource in resources:
            resource["metadata"].setdefault("labels", {}).update(pairs["pairs"])
    if "namespace" in spec:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = spec["namespace"]
    return resources


def _apply_component(component: Path, resources: list[Resource]) -> list[Resource]:
    spec = _kustomization(component)
    out = [copy.deepcopy(r) for r in resources]
    for entry in spec.get("resources", []):
        out += load_documents(component / entry)
    _apply_patches(component, out, spec.get("patches", []))
    _apply_images(out, spec.get("images", []))
    _apply_replicas(out, spec.get("replicas", []))
    return out
