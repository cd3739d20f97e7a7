"""deploy/Dockerfile, checked statically (no Docker engine here): multi-stage, the
project installed from its pyproject, a non-root user, `chargeflow` as the entrypoint,
pinned base images, and nothing the build needs left out by .dockerignore."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

import pytest

from tests.support.deploy import COMPOSE, DEPLOY, load_yaml, pinned
from tests.support.paths import ROOT

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def substituted(text: str) -> str:
    args = dict(a.split("=", 1) for kind, a in instructions() if kind == "ARG" and "=" in a)
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], text)


def test_multi_stage_with_pinned_bases() -> None:
    built = stages()
    assert len(built) >= 2
    froms = [substituted(stage[0][1]) for stage in built]
    assert all(pinned(f.split()[0]) for f in froms), froms
    assert froms[0].endswith(" AS build")
    runtime = built[-1]
    assert ("COPY", "--from=build /opt/chargeflow /opt/chargeflow") in runtime


def test_the_build_stage_installs_the_project_as_make_does() -> None:
    build = stages()[0]
    runs = " ".join(a for kind, a in build if kind == "RUN")
    assert "pip install --no-binary urllib3-future ." in runs
    assert "URLLIB3_NO_OVERRIDE=1" in runs
    makefile = (ROOT / "Makefile").read_text()
    assert "URLLIB3_NO_OVERRIDE=1" in makefile
    assert "--no-binary urllib3-future" in makefile
    assert ("COPY", ". .") in build


def test_the_runtime_runs_chargeflow_as_a_non_root_user() -> None:
    runtime = stages()[-1]
    [user] = [a for kind, a in runtime if kind == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit()
    assert int(uid) >= 1000
    [entry] = [a for kind, a in runtime if kind == "ENTRYPOINT"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(entry) == ["chargeflow"]
    assert "chargeflow" in scripts
    assert runtime.index(next(i for i in runtime if i[0] == "USER")) > max(
        runtime.index(i) for i in runtime if i[0] == "RUN"
    )


def _ignored(path: str) -> bool:
    patterns = [
        p.strip().rstrip("/")
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    parts = path.split("/")
    return any(
        fnmatch.fnmatch("/".join(parts[: i + 1]), pattern.removeprefix("**/"))
        or fnmatch.fnmatch(parts[i], pattern.removeprefix("**/"))
        for pattern in patterns
        for i in range(len(parts))
    )


@pytest.mark.parametrize(
    "path",
    ["pyproject.toml", "README.md", "store/migrations/versions", "deploy/docker/chargeflow-flow"],
)
def test_the_build_context_keeps_what_the_build_needs(path: str) -> None:
    assert (ROOT / path).exists()
    assert not _ignored(path)


def test_every_package_of_the_project_is_in_the_context() -> None:
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    packages = [p.parent.name for p in ROOT.glob("*/__init__.py")]
    shipped = [p for p in packages if any(fnmatch.fnmatch(p, pattern) for pattern in include)]
    assert len(shipped) >= 10
    assert not [p for p in shipped if _ignored(p)]
    assert _ignored("deploy/secrets/database_url")
    assert _ignored("tests")


def test_the_volumes_mount_where_the_image_made_directories_for_its_user() -> None:
    made = set(re.findall(r"(/var/lib/chargeflow/\w+)", " ".join(a for _, a in stages()[-1])))
    targets = {
        v.split(":")[1]
        for s in load_yaml(COMPOSE)["services"].values()
        if s.get("image", "").startswith("chargeflow:")
        for v in s.get("volumes", [])
    }
    assert targets
    assert targets <= made
