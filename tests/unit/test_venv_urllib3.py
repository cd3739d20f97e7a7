"""The environment `make` builds keeps the real urllib3: urllib3-future (a dependency of
grafana-client through niquests) must sit beside it, not replace it (see the Makefile)."""

from __future__ import annotations

import site
from pathlib import Path

import urllib3


def test_urllib3_is_the_real_one() -> None:
    # urllib3-future's versions have a patch number of 900 or more (2.25.904).
    patch = int(urllib3.__version__.split(".")[2])
    assert patch < 900, f"urllib3 {urllib3.__version__} is urllib3-future's copy"


def test_no_path_hook_overwrites_urllib3() -> None:
    hooks = [p for d in site.getsitepackages() for p in Path(d).glob("urllib3_future*.pth")]
    assert hooks == [], hooks
