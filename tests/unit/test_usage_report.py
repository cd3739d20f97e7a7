"""The usage report's maths (reports.usage) on hand-computed cases: status spans and
their classes, faults, register interpolation and clipping at the period's boundaries,
revenue per currency, alerts, peak hours in a time zone (DST included), empty periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from reports.usage import (
    AlertFacts,
    RegisterReading,
    ReportInputError,
    RevenueItem,
    SessionFacts,
    StatusChange,
    UsageFigures,
    UsageInputs,
    UsageReport,
    local_hour_slices,
    register_at,
    session_energy_in,
    usage_report,
)

T = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)
M = timedelta(minutes=1)


def status(cp: str, connector: int, at: datetime, value: str, **extra: str) -> StatusChange:
    return StatusChange(cp, connector, at, value, extra.get("error_code"), extra.get("reason"))


def reading(at: datetime, wh: int) -> RegisterReading:
    return RegisterReading(at, Decimal(wh))


def session(
    cp: str,
    connector: int,
    started: datetime,
    stopped: datetime | None,
    energy: int | None,
    *readings: RegisterReading,
) -> SessionFacts:
    return SessionFacts(f"s-{cp}-{started:%H%M}", cp, connector, started, stopped, energy, readings)


A1_HISTORY = (
    status("CP-A", 1, T - H, "Available"),
    status("CP-A", 1, T + H, "Preparing"),
    status("CP-A", 1, T + H + 10 * M, "Charging"),
    status("CP-A", 1, T + 3 * H + 10 * M, "SuspendedEV"),
    status("CP-A", 1, T + 3 * H + 40 * M, "Finishing"),
    status("CP-A", 1, T + 4 * H, "Available"),
    status("CP-A", 1, T + 6 * H, "Faulted", error_code="GroundFailure"),
    status("CP-A", 1, T + 7 * H, "Available"),
    status("CP-A", 1, T + 8 * H, "Offline", reason="closed by station"),
    status("CP-A", 1, T + 9 * H, "Available", reason="connected"),
    status("CP-A", 1, T + 11 * H, "Charging"),  # after the period: ignored
)


def inputs(**changes: object) -> UsageInputs:
    fields: dict[str, object] = {
        "start": T,
        "end": T + 10 * H,
        "observed_until": T + 30 * H,
        "time_zone": "UTC",
        "site_id": None,
        "connectors": [("CP-A", 1, "S1"), ("CP-A", 2, "S1"), ("CP-A", 0, "S1")],
        "status_changes": A1_HISTORY,
        "sessions": [
            session("CP-A", 1, T + H + 10 * M, T + 3 * H + 40 * M, 15_000),
            # Crossing the start: 0 -> 20,000 Wh over two hours, half of it before T.
            session("CP-B", 1, T - H, T + H, 20_000, reading(T - H, 0), reading(T + H, 20_000)),
            # Crossing the end, still active: registers sampled around it.
            session(
                "CP-A",
                2,
                T + 9 * H,
                None,
                None,
                reading(T + 9 * H, 5_000),
                reading(T + 9 * H + 30 * M, 6_000),
                reading(T + 10 * H + 30 * M, 8_000),
            ),
        ],
        "revenue": [
            RevenueItem("CP-A", 1, T + H + 10 * M, "EUR", 1000, 1190),
            RevenueItem("CP-A", 1, T + H + 10 * M, "EUR", -200, -238),  # a credit
            RevenueItem("CP-A", 2, T + 9 * H, "USD", 500, 500),
            RevenueItem("CP-A", 1, T + 11 * H, "EUR", 9999, 9999),  # after the period
        ],
        "alerts": [
            AlertFacts("CP-A", 1, T + 6 * H, "connector_overheating"),
            AlertFacts("CP-A", 0, T + 2 * H, "station_offline"),
            AlertFacts("CP-A", 1, T - H, "connector_overheating"),  # before the period
        ],
    }
    fields.update(changes)
    return UsageInputs(**fields)  # type: ignore[arg-type]


def by_key(report: UsageReport) -> dict[tuple[str, int], UsageFigures]:
    return {(c.charge_point_id, c.connector_id): c.figures for c in report.connectors}


def test_one_connector_hand_computed() -> None:
    report = usage_report(inputs())
    a1 = report.connectors[0]
    assert (a1.charge_point_id, a1.connector_id, a1.site_id) == ("CP-A", 1, "S1")
    f = a1.figures
    assert f.period_s == 36_000
    assert f.charging_s == 7_200  # 01:10-03:10
    assert f.idle_s == 3_600  # Preparing 10 min + SuspendedEV 30 + Finishing 20
    assert f.occupied_s == 10_800
    assert f.downtime_s == 7_200  # Faulted 06-07 + Offline 08-09
    assert f.available_s == 18_000
    assert f.unknown_s == 0
    assert f.utilisation == Decimal("0.2000")
    assert f.occupancy == Decimal("0.3000")
    assert f.energy_wh == 15_000
    assert f.sessions == 1
    assert f.average_duration_s == 9_000
    assert [(m.currency, m.total_excl, m.total_incl) for m in f.revenue] == [
        ("EUR", Decimal("8.00"), Decimal("9.52"))
    ]
    assert f.faults == 1
    assert f.error_codes == {"GroundFailure": 1}
    assert f.alerts == 1


def test_clipping_at_both_boundaries_and_network_totals() -> None:
    report = usage_report(inputs())
    figures = by_key(report)
    assert list(figures) == [("CP-A", 1), ("CP-A", 2), ("CP-B", 1)]  # CP-A/0 is no connector
    a2, b1 = figures[("CP-A", 2)], figures[("CP-B", 1)]
    # R(T+10h) = 6000 + 2000 x 30/60 = 7000, from 5000 at the start.
    assert a2.energy_wh == 2_000
    assert a2.sessions == 1
    assert a2.average_duration_s is None
    assert a2.unknown_s == 36_000
    # Half of the crossing session's rise is after T; it started before: not counted.
    assert b1.energy_wh == 10_000
    assert b1.sessions == 0
    totals = report.totals
    assert totals.connectors == 3
    assert totals.charging_s == 7_200
    assert totals.utilisation == Decimal("0.0667")  # 7200 / (3 x 36000)
    assert totals.energy_wh == 27_000
    assert totals.sessions == 2
    assert totals.average_duration_s == 9_000
    assert [(m.currency, m.total_incl_minor) for m in totals.revenue] == [
        ("EUR", 952),
        ("USD", 500),
    ]
    assert totals.alerts == 2  # the connector's and the station's
    assert totals.faults == 1


def test_peak_hours_sum_to_the_totals() -> None:
    report = usage_report(inputs())
    assert len(report.peak_hours) == 7 * 24
    assert report.peak_hours[0].weekday == 0
    assert report.peak_hours[0].hour == 0
    cells = {(p.weekday, p.hour): p for p in report.peak_hours}
    assert (cells[(0, 1)].sessions, cells[(0, 1)].energy_wh) == (1, 15_000)
    assert (cells[(0, 9)].sessions, cells[(0, 9)].energy_wh) == (1, 2_000)
    assert [cells[(0, h)].charging_s for h in (1, 2, 3)] == [3_000, 3_600, 600]
    assert sum(p.charging_s for p in report.peak_hours) == report.totals.charging_s
    assert sum(p.sessions for p in report.peak_hours) == report.totals.sessions


def test_peak_hours_in_the_site_time_zone() -> None:
    report = usage_report(inputs(time_zone="Europe/Berlin"))  # UTC+2 in June
    cells = {(p.weekday, p.hour): p for p in report.peak_hours}
    assert cells[(0, 3)].sessions == 1  # 01:10 UTC = 03:10 in Berlin
    assert cells[(0, 1)].sessions == 0
    assert cells[(0, 11)].sessions == 1


def test_local_hours_on_a_dst_day() -> None:
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 2026-03-29 00:00 local
    end = datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # 2026-03-30 00:00 local: 23 h
    slices = list(local_hour_slices(start, end, zone))
    assert len(slices) == 23
    assert 2 not in {hour for _, hour, _ in slices}  # 02:00 does not exist that day
    assert sum((length for _, _, length in slices), timedelta(0)) == end - start
    # A half-hour offset zone cuts at local hour boundaries (xx:30 UTC).
    india = list(local_hour_slices(T, T + H, ZoneInfo("Asia/Kolkata")))
    assert [length for _, _, length in india] == [30 * M, 30 * M]


def test_observed_until_shortens_the_period() -> None:
    report = usage_report(inputs(observed_until=T + 5 * H))
    a1 = report.connectors[0].figures
    assert a1.period_s == 18_000
    assert a1.utilisation == Decimal("0.4000")  # 2 h of 5
    assert a1.faults == 0  # the fault at 06:00 is not observed yet
    assert report.observed_until == T + 5 * H
    assert report.end == T + 10 * H


def test_a_restored_fault_is_not_a_new_fault() -> None:
    history = (
        status("CP-A", 1, T - H, "Faulted", error_code="GroundFailure"),  # before: ongoing
        status("CP-A", 1, T + H, "Offline", reason="closed by station"),
        status("CP-A", 1, T + 2 * H, "Faulted", reason="connected"),
        status("CP-A", 1, T + 3 * H, "Available"),
        status("CP-A", 1, T + 4 * H, "Faulted", error_code="NoError"),
        status("CP-A", 1, T + 5 * H, "Faulted", error_code="OverVoltage"),  # still faulted
    )
    report = usage_report(inputs(status_changes=history, sessions=[], revenue=[], alerts=[]))
    a1 = report.connectors[0].figures
    assert a1.faults == 1
    assert a1.error_codes == {"unspecified": 1}
    assert a1.downtime_s == 3 * 3_600 + 6 * 3_600  # 00-03 (faulted, offline), 04-10


def test_empty_period() -> None:
    report = usage_report(inputs(status_changes=[], sessions=[], revenue=[], alerts=[]))
    assert [c.connector_id for c in report.connectors] == [1, 2]
    totals = report.totals
    assert (totals.connectors, totals.unknown_s, totals.charging_s) == (2, 72_000, 0)
    assert totals.utilisation == Decimal("0.0000")
    assert totals.energy_wh == 0
    assert totals.average_duration_s is None
    assert totals.revenue == ()
    assert all(p.sessions == 0 and p.charging_s == 0 for p in report.peak_hours)


def test_no_connectors_at_all() -> None:
    report = usage_report(
        inputs(connectors=[], status_changes=[], sessions=[], revenue=[], alerts=[])
    )
    assert report.connectors == ()
    assert report.totals.connectors == 0
    assert report.totals.utilisation == Decimal(0)


def test_a_period_must_have_length() -> None:
    with pytest.raises(ReportInputError, match="earlier"):
        usage_report(inputs(end=T))


def test_register_interpolation() -> None:
    readings = (reading(T, 1_000), reading(T + H, 2_000), reading(T + 2 * H, 2_000))
    assert register_at(readings, T) == 1_000
    assert register_at(readings, T + 15 * M) == 1_250
    assert register_at(readings, T + 90 * M) == 2_000
    assert register_at(readings, T - M) is None
    assert register_at(readings, T + 3 * H) is None
    # A session across both boundaries: the rise between them only.
    crossing = session(
        "CP-A", 1, T - H, T + 3 * H, 4_000, reading(T - H, 0), reading(T + 3 * H, 4_000)
    )
    assert session_energy_in(crossing, T, T + 2 * H) == 2_000
    # Wholly inside: its own figure (a corrected one may differ from the registers).
    corrected = session("CP-A", 1, T, T + H, 900, reading(T, 0), reading(T + H, 1_000))
    assert session_energy_in(corrected, T, T + 2 * H) == 900
    # No reading past the start of an active session: nothing can be said.
    active = session("CP-A", 1, T, None, None, reading(T, 0))
    assert session_energy_in(active, T, T + 2 * H) == 0
