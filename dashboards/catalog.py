"""Every dashboard as Grafana's JSON, and writing them for file provisioning."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as gmodel

from dashboards import billing, maintenance, operations
from dashboards.common import Flavour

DEFAULT_CURRENCIES = ("EUR",)


def to_json(dashboard: gmodel.Dashboard) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(dashboard, cls=JSONEncoder))
    return data


def dashboards(
    flavour: Flavour | None = None, currencies: Sequence[str] = DEFAULT_CURRENCIES
) -> list[dict[str, Any]]:
    """Operations, Maintenance and one Billing dashboard per currency, as JSON."""
    flavour = flavour or Flavour()
    boards = [operations.build(flavour), maintenance.build(flavour)]
    boards += [billing.build(flavour, currency) for currency in dict.fromkeys(currencies)]
    return [to_json(board) for board in boards]


def export(
    directory: Path, flavour: Flavour | None = None, currencies: Sequence[str] = DEFAULT_CURRENCIES
) -> list[Path]:
    """Write each dashboard to ``directory/<uid>.json`` (created if missing); returns the
    files written. Files are rewritten only when their content changed."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for board in dashboards(flavour, currencies):
        path = directory / f"{board['uid']}.json"
        text = json.dumps(board, indent=2, sort_keys=True) + "\n"
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
