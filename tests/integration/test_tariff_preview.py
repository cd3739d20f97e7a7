"""Operators try tariffs before they go live: ``chargeflow tariff price`` (a subprocess)
and ``POST /v1/tariffs/preview`` (the API on the real database) price a session under
any OCPI 2.2.1 Tariff, give the same CDR, and reject bad input with a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from billing.preview import decode_json
from tests.support.api import api_client, assert_problem, auth
from tests.support.billing import Run, component, element, session_json, tariff_json, utc
from tests.support.paths import ROOT

pytestmark = pytest.mark.integration

OCPI = ROOT / "tests" / "data" / "ocpi"
# Peak 17:00-20:00 Amsterdam time with a parking fee, a start fee and an odd VAT.
TARIFF = tariff_json(
    element(component("FLAT", "0.35", vat="19")),
    element(
        component("ENERGY", "0.4567", vat="19"),
        component("TIME", "1.20", vat="19", step=60),
        start_time="17:00",
        end_time="20:00",
    ),
    element(component("ENERGY", "0.2899", vat="19"), component("PARKING_TIME", "3.00", step=300)),
)
SESSION = session_json(
    utc(2026, 3, 2, 15, 20),  # 16:20 local
    Run(55, 11_000),
    Run(25, 7_400),
    Run(17, 0),
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargeflow.cli", "tariff", *args],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("CHARGEFLOW_")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(tmp_path: Path, name: str, data: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def test_cli_prints_the_cdr_and_the_api_gives_the_same(tmp_path: Path, clean_db: str) -> None:
    done = cli(
        "price",
        "--tariff",
        str(write(tmp_path, "t.json", TARIFF)),
        "--session",
        str(write(tmp_path, "s.json", SESSION)),
    )
    assert done.returncode == 0, done.stderr
    cdr = decode_json(done.stdout, "the CLI's output")
    assert cdr["total_energy"] == Decimal("13.166")  # 10.083 + 3.083 kWh
    assert cdr["total_time"] == Decimal("1.6167")
    assert cdr["total_parking_time"] == Decimal("0.2833")
    assert [p["start_date_time"] for p in cdr["charging_periods"]] == [
        "2026-03-02T15:20:00Z",
        "2026-03-02T16:00:00Z",  # 17:00 local: peak
        "2026-03-02T16:40:00Z",  # parked
    ]
    lines = cdr["cost_breakdown"]
    assert sum((line["cost"]["excl_vat"] for line in lines), Decimal(0)) == Decimal(
        str(cdr["total_cost"]["excl_vat"])
    )
    # 0.35 start fee; 16:20-17:00 local 7.3331 kWh x 0.2899 (time free); 17:00-17:40
    # 5.8329 kWh x 0.4567 + 40 min x 1.20/h; 17 min parked, rounded to 20 min x 3.00/h:
    # 0.35 + 2.12586 + 2.66389 + 0.80 + 1.00 = 6.93975.
    assert cdr["total_cost"]["excl_vat"] == Decimal("6.94")


@pytest.mark.parametrize(
    ("tariff", "session", "says"),
    [
        ("{not json", SESSION, "not valid JSON"),
        ({**TARIFF, "currency": "euro"}, SESSION, "currency"),
        ({**TARIFF, "elements": []}, SESSION, "elements"),
        (TARIFF, {**SESSION, "time_zone": "Mars/Olympus"}, "unknown time_zone"),
        (TARIFF, {**SESSION, "readings": SESSION["readings"][::-1]}, "first reading"),
    ],
)
def test_cli_rejects_bad_input_in_one_line(
    tmp_path: Path, tariff: Any, session: Any, says: str
) -> None:
    done = cli(
        "price",
        "--tariff",
        str(write(tmp_path, "t.json", tariff)),
        "--session",
        str(write(tmp_path, "s.json", session)),
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert says in lines[0]
    assert done.stdout == ""


def test_cli_check_validates_the_spec_examples(tmp_path: Path) -> None:
    good = cli("check", str(OCPI / "tariffs" / "tariff_4_complex.json"))
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("valid: tariff")
    bad = cli("check", str(OCPI / "invalid" / "start_time_25h.json"))
    assert bad.returncode == 2
    assert "start_time" in bad.stderr
    missing = cli("check", str(tmp_path / "nowhere.json"))
    assert missing.returncode == 2
    assert "cannot read the tariff file" in missing.stderr


async def test_api_preview_prices_exactly_and_checks_roles(
    clean_db: str, keys: dict[str, str]
) -> None:
    body = json.dumps({"tariff": TARIFF, "session": SESSION})
    async with api_client(clean_db) as client:
        for role, allowed in {
            "billing": True,
            "operator": True,
            "admin": True,
            "maintenance": False,
            "public": False,
        }.items():
            resp = await client.post("/v1/tariffs/preview", content=body, headers=auth(keys[role]))
            assert resp.status_code == (200 if allowed else 403), (role, resp.text)
        resp = await client.post("/v1/tariffs/preview", content=body, headers=auth(keys["billing"]))
        cdr = decode_json(resp.content, "the response")
        assert cdr["total_cost"] == {"excl_vat": Decimal("6.94"), "incl_vat": Decimal("8.28")}
        # The amounts are JSON numbers written exactly (never a float's digits).
        assert b'"total_cost":{"excl_vat":6.94,"incl_vat":8.28}' in resp.content
        unauthenticated = await client.post("/v1/tariffs/preview", content=body)
        assert unauthenticated.status_code == 401


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"[1, 2", "not valid JSON"),
        (b"[]", '{"tariff"'),
        (json.dumps({"tariff": TARIFF}).encode(), '{"tariff"'),
        (json.dumps({"tariff": {**TARIFF, "id": "x" * 40}, "session": SESSION}).encode(), "id"),
        (
            json.dumps({"tariff": TARIFF, "session": {**SESSION, "stop": "yesterday"}}).encode(),
            "stop",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
async def test_api_preview_answers_422_naming_the_problem(
    clean_db: str, keys: dict[str, str], content: bytes, says: str
) -> None:
    async with api_client(clean_db) as client:
        resp = await client.post(
            "/v1/tariffs/preview", content=content, headers=auth(keys["operator"])
        )
        problem = assert_problem(resp, 422)
        assert says in problem["detail"]


async def test_api_preview_refuses_a_body_over_4_mib(clean_db: str, keys: dict[str, str]) -> None:
    async with api_client(clean_db) as client:
        resp = await client.post(
            "/v1/tariffs/preview",
            content=b" " * (4 * 1024 * 1024 + 1),
            headers=auth(keys["operator"]),
        )
        assert_problem(resp, 413)
