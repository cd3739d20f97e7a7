"""The cost calculation gives what it gave when tests/data/cost_golden.json was written:
for each seeded session and tariff of tests/support/cost_golden.py, the same encoded CDR
(every field, to the digit) and the same exact volumes and totals behind it. A change of
results must be deliberate: regenerate the file and say why in the commit."""

from __future__ import annotations

import json

from tests.support.cost_golden import GOLDEN, cases, digest


def test_every_session_prices_as_recorded() -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    differences = []
    for name, tariff, usage in cases():
        n = seen[name] = seen.get(name, -1) + 1
        got, want = digest(tariff, usage), golden[name][n]
        if got != want:
            differences.append(f"{name}[{n}] (start {usage.start}): {got} != {want}")
    assert {name: len(entries) for name, entries in golden.items()} == {
        name: n + 1 for name, n in seen.items()
    }
    assert not differences, f"{len(differences)} sessions differ: " + "\n".join(differences[:10])
