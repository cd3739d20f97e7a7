"""A day of a site's usage in the real tables (stations, connectors, status history,
sessions, register samples, issued CDRs, alerts), and what its usage report must say,
worked out by hand (docs/reports.md). Period: Monday 2026-06-01 UTC, a day; site
``S-REP`` in Europe/Berlin (UTC+2 then); ``CP-X`` on another site adds to the network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from bus.alerts import AlertKind
from store.cdrs import INSERT_COLUMNS, cdr_row
from store.stations import provision_station
from tests.support.alerts import AlertFacts, fault_alert, write_alerts
from tests.support.api import insert_session
from tests.support.cdrs import closed_session, issued_cdr

T = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)
M = timedelta(minutes=1)
SITE = "S-REP"
OTHER_SITE = "S-X"
ZONE = "Europe/Berlin"
PERIOD = {"from": "2026-06-01T00:00:00Z", "to": "2026-06-02T00:00:00Z"}

STATUS = (
    ("CP-R1", 1, T - H, "Available", None),
    ("CP-R1", 1, T + 8 * H, "Preparing", None),
    ("CP-R1", 1, T + 8 * H + 5 * M, "Charging", None),
    ("CP-R1", 1, T + 10 * H + 5 * M, "SuspendedEV", None),
    ("CP-R1", 1, T + 10 * H + 35 * M, "Finishing", None),
    ("CP-R1", 1, T + 10 * H + 50 * M, "Available", None),
    ("CP-R1", 1, T + 14 * H, "Faulted", "GroundFailure"),
    ("CP-R1", 1, T + 15 * H, "Available", None),
    ("CP-R1", 2, T - 2 * H, "Charging", None),
    ("CP-R1", 2, T + H, "Available", None),
    ("CP-R1", 2, T + 20 * H, "Charging", None),
    ("CP-R1", 2, T + 25 * H, "Available", None),
    ("CP-X", 1, T + 9 * H, "Charging", None),
    ("CP-X", 1, T + 10 * H, "Available", None),
)

# What the report for the site must say (hand-computed from the rows above).
EXPECTED_SITE: dict[tuple[str, int], dict[str, Any]] = {
    ("CP-R1", 1): {
        "charging_s": 7_200,  # 08:05-10:05 UTC
        "idle_s": 3_000,  # Preparing 5 min, SuspendedEV 30, Finishing 15
        "downtime_s": 3_600,  # Faulted 14:00-15:00
        "available_s": 72_600,
        "utilisation": "0.0833",
        "energy_wh": 22_000,
        "sessions": 1,
        "average_duration_s": 9_900,  # 2 h 45 min
        "faults": 1,
        "error_codes": {"GroundFailure": 1},
        "alerts": 1,
    },
    ("CP-R1", 2): {
        "charging_s": 18_000,  # 00:00-01:00 and 20:00-24:00
        "idle_s": 0,
        "downtime_s": 0,
        "available_s": 68_400,
        "utilisation": "0.2083",
        # 1,000 Wh of the session crossing the start (its last hour of 3, linear between
        # start and stop registers: no samples) and 40,000 of the one crossing the end
        # (the register sampled at midnight: 140,000 - 100,000).
        "energy_wh": 41_000,
        "sessions": 1,
        "average_duration_s": 18_000,
        "faults": 0,
        "error_codes": {},
        "alerts": 0,
    },
}
EXPECTED_SITE_TOTALS: dict[str, Any] = {
    "connectors": 2,
    "period_s": 86_400,
    "charging_s": 25_200,
    "utilisation": "0.1458",  # 25,200 / 172,800
    "energy_wh": 63_000,
    "sessions": 2,
    "average_duration_s": 13_950,
    "faults": 1,
    "alerts": 1,
}


def _cdr_for(url: str, row: dict[str, Any], site: str) -> dict[str, Any]:
    minutes = int((row["stopped_at"] - row["started_at"]) / M)
    closed = closed_session(
        row["started_at"],
        energy_wh=row["energy_wh"],
        minutes=minutes,
        charge_point_id=row["charge_point_id"],
        connector_id=row["connector_id"],
        session_id=str(row["session_id"]),
        transaction_id=row["transaction_id"],
        meter_start_wh=row["meter_start_wh"],
    )
    cdr = issued_cdr(closed)
    stored = cdr_row(
        cdr,
        charge_point_id=row["charge_point_id"],
        connector_id=row["connector_id"],
        site_id=site,
        id_tag="TAG-1",
        customer=None,
    )
    marks = ", ".join(["%s"] * (len(stored) - 1))
    # store.cdrs.insert_cdr's statement, from a synchronous connection (callable from
    # sync and async tests alike).
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"INSERT INTO cdrs ({INSERT_COLUMNS}) VALUES ({marks}, %s::jsonb)", stored)
    return cdr


# (station, connector, start, stop, register at start, at stop): the day's sessions.
SESSIONS = (
    ("CP-R1", 1, T + 8 * H + 5 * M, T + 10 * H + 50 * M, 0, 22_000),  # billed
    ("CP-R1", 2, T - 2 * H, T + H, 50_000, 53_000),  # crossing the start
    ("CP-R1", 2, T + 20 * H, T + 25 * H, 100_000, 150_000),  # crossing the end, billed
    ("CP-X", 1, T + 9 * H, T + 10 * H, 0, 10_000),  # another site
)


def _seed_registry_and_status(url: str) -> None:
    provision_station(url, "CP-R1", SITE)
    provision_station(url, "CP-X", OTHER_SITE)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("UPDATE sites SET time_zone = %s WHERE site_id = %s", (ZONE, SITE))
        for cp, connector in (("CP-R1", 1), ("CP-R1", 2), ("CP-X", 1)):
            db.execute(
                "INSERT INTO connectors (charge_point_id, connector_id) VALUES (%s, %s)",
                (cp, connector),
            )
        for cp, connector, at, status, error_code in STATUS:
            db.execute(
                "INSERT INTO connector_status_history (charge_point_id, connector_id, at,"
                " status, ocpp_status, error_code) VALUES (%s, %s, %s, %s, %s, %s)",
                (cp, connector, at, status, status, error_code or "NoError"),
            )


def _seed_sessions(url: str) -> list[dict[str, Any]]:
    """The sessions, with the late one's register sampled at 23:00 and midnight."""
    with psycopg.connect(url, autocommit=True) as db:
        rows = [
            insert_session(
                db,
                charge_point_id=cp,
                connector_id=connector,
                started_at=started,
                stopped_at=stopped,
                meter_start_wh=first,
                meter_stop_wh=last,
                energy_wh=last - first,
            )
            for cp, connector, started, stopped, first, last in SESSIONS
        ]
        for at, wh in ((T + 23 * H, 130_000), (T + 24 * H, 140_000)):
            db.execute(
                "INSERT INTO meter_samples (measured_at, charge_point_id, connector_id,"
                " transaction_id, measurand, unit, value) VALUES (%s, 'CP-R1', 2, %s,"
                " 'Energy.Active.Import.Register', 'Wh', %s)",
                (at, rows[2]["transaction_id"], wh),
            )
    return rows


def seed_usage_day(url: str) -> dict[str, Decimal]:
    """Store the day; returns the site's revenue incl. VAT in EUR and excl. VAT, as the
    issued CDRs (priced by the real billing code) say."""
    _seed_registry_and_status(url)
    sessions = _seed_sessions(url)
    cdrs = [_cdr_for(url, sessions[0], SITE), _cdr_for(url, sessions[2], SITE)]
    write_alerts(
        url,
        [fault_alert(AlertFacts("CP-R1", 1, AlertKind.GROUND_FAULT, T + 14 * H))],
    )
    return {
        "excl": sum((Decimal(str(c["total_cost"]["excl_vat"])) for c in cdrs), Decimal(0)),
        "incl": sum((Decimal(str(c["total_cost"]["incl_vat"])) for c in cdrs), Decimal(0)),
    }
