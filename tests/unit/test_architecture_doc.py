"""docs/architecture.md stays true of the tree: every folder its layout table names exists,
and every relative link in it and in the ADR index resolves."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"


def _layout_folders(text: str) -> list[str]:
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+/)` \|", section, flags=re.MULTILINE)


def test_layout_names_only_folders_that_exist() -> None:
    folders = _layout_folders(DOC.read_text())
    assert len(folders) >= 10, folders
    missing = [f for f in folders if not (ROOT / f).is_dir()]
    assert not missing, f"docs/architecture.md names folders that do not exist: {missing}"


def test_every_package_is_in_the_layout() -> None:
    named = {f.split("/")[0] for f in _layout_folders(DOC.read_text())}
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in {"tests"}}
    assert packages <= named | {"models", "billing", "dashboards"}, packages - named


def test_relative_links_resolve() -> None:
    for doc in (DOC, ROOT / "docs" / "adr" / "README.md"):
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
