"""The OCPI 2.2.1 Tariffs module's own examples (tests/data/ocpi, sources in its
README): every example tariff is accepted, every invalid one rejected with its field
named, and every worked pricing case, reservations included, gives the spec's totals
exactly (the errata's values where the texts differ)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.preview import decode_json, preview
from billing.tariffs import TariffError, parse_tariff

DATA = Path(__file__).resolve().parents[1] / "data" / "ocpi"
# The spec shows this one as a PUT body without last_updated, which its own Tariff
# object requires.
SPEC_EXAMPLES_MISSING_REQUIRED = {"tariff_put_example.json": "last_updated"}
INVALID_FIELD = {
    "missing_currency.json": "currency",
    "currency_four_letters.json": "currency",
    "elements_empty.json": "elements",
    "price_components_empty.json": "price_components",
    "unknown_dimension_type.json": "type",
    "step_size_not_integer.json": "step_size",
    "start_time_25h.json": "start_time",
    "day_of_week_funday.json": "day_of_week",
    "id_37_chars.json": "id",
    "country_code_three_letters.json": "country_code",
    "party_id_four_chars.json": "party_id",
    "last_updated_missing.json": "last_updated",
}


def _load(path: Path) -> Any:
    return decode_json(path.read_bytes(), path.name)


def _cases() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = _load(DATA / "cases.json")
    return cases


@pytest.mark.parametrize("path", sorted((DATA / "tariffs").glob("*.json")), ids=lambda p: p.stem)
def test_every_example_tariff_is_accepted(path: Path) -> None:
    missing = SPEC_EXAMPLES_MISSING_REQUIRED.get(path.name)
    if missing is None:
        assert parse_tariff(_load(path)).elements
    else:
        with pytest.raises(TariffError, match=f"{missing}: Field required"):
            parse_tariff(_load(path))


def test_the_invalid_set_is_the_one_listed() -> None:
    listed = set(json.loads((DATA / "invalid" / "reasons.json").read_text()))
    files = {p.name for p in (DATA / "invalid").glob("*.json")} - {"reasons.json"}
    assert files == listed == set(INVALID_FIELD)


@pytest.mark.parametrize("name", sorted(INVALID_FIELD))
def test_every_invalid_tariff_is_rejected_naming_its_field(name: str) -> None:
    with pytest.raises(TariffError) as error:
        parse_tariff(_load(DATA / "invalid" / name))
    assert INVALID_FIELD[name] in str(error.value)


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_worked_examples_price_as_the_spec_says(case: dict[str, Any]) -> None:
    tariff = case["tariff"]
    if isinstance(tariff, str):
        tariff = _load(DATA / "tariffs" / tariff)
    cdr = preview(tariff, case["session"])
    expected = case["expected"]
    total = expected["total_cost"]
    assert cdr["total_cost"]["excl_vat"] == Decimal(total["excl_vat"])
    if total["incl_vat"] is not None:
        assert cdr["total_cost"]["incl_vat"] == Decimal(total["incl_vat"])
    else:  # no VAT given anywhere: none is applicable
        assert cdr["total_cost"]["incl_vat"] == cdr["total_cost"]["excl_vat"]
    for field in ("total_energy", "total_time", "total_parking_time"):
        if expected.get(field) is not None:
            assert cdr[field] == Decimal(expected[field]), field
    # The spec rounds each dimension's cost on its own, so its parts may miss the total
    # by a cent; ours are apportioned from the total (they add up): at most a cent apart.
    for field in (
        "total_energy_cost",
        "total_time_cost",
        "total_parking_cost",
        "total_reservation_cost",
        "total_fixed_cost",
    ):
        if field in expected:
            spec = Decimal(expected[field]["excl_vat"])
            assert abs(cdr[field]["excl_vat"] - spec) <= Decimal("0.01"), field
    lines = sum((line["cost"]["excl_vat"] for line in cdr["cost_breakdown"]), Decimal(0))
    adjustment = cdr.get("price_limit_adjustment", {"excl_vat": Decimal(0)})["excl_vat"]
    assert lines + adjustment == cdr["total_cost"]["excl_vat"]


def test_every_case_runs_reservations_included() -> None:
    cases = _cases()
    assert len(cases) == 29
    assert sum("reservation" in c["session"] for c in cases) == 6
