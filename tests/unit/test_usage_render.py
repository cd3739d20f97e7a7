"""The usage report's CSV and HTML (no database): hostile ids escaped in the page, kept as
text in the CSV and drawn as text in the charts; every number on the page carries the
report's value; the CSV's rows add up to its total row."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from api.routers.reports import usage_csv
from reports.html import render_usage
from reports.usage import RevenueItem, SessionFacts, StatusChange, UsageInputs, usage_report

T = datetime(2026, 6, 1, tzinfo=UTC)
H = timedelta(hours=1)
HOSTILE = '=cmd|"<b>x</b>",$\\frac{1}$'


def report_of(cp: str) -> UsageInputs:
    return UsageInputs(
        start=T,
        end=T + 4 * H,
        observed_until=T + 4 * H,
        time_zone="UTC",
        site_id="S<1>",
        connectors=[(cp, 1, "S<1>"), ("CP-2", 1, "S<1>")],
        status_changes=[
            StatusChange(cp, 1, T, "Charging"),
            StatusChange(cp, 1, T + H, "Available"),
            StatusChange("CP-2", 1, T, "Faulted", "GroundFailure"),
        ],
        sessions=[SessionFacts("s1", cp, 1, T, T + H, 7_001, ())],
        revenue=[RevenueItem(cp, 1, T, "EUR", 123_456, 146_913)],
        alerts=[],
    )


def test_html_escapes_ids_and_carries_the_values() -> None:
    report = usage_report(report_of(HOSTILE))
    page = render_usage(report)
    assert "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert "S&lt;1&gt;" in page
    assert page.count("<svg") == 3
    values = dict(re.findall(r'data-field="(totals\.[^"]+)" data-value="([^"]*)"', page))
    totals = report.totals
    assert values["totals.utilisation"] == str(totals.utilisation) == "0.1250"
    assert values["totals.energy_wh"] == "7001"
    assert values["totals.revenue.EUR.total_incl_vat"] == "1469.13"
    assert "7.001 kWh" in page
    assert "1,469.13 EUR" in page
    assert "12.50 %" in page


def test_csv_rows_add_up_and_ids_stay_text() -> None:
    report = usage_report(report_of(HOSTILE))
    text = usage_csv(report)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [r["row"] for r in rows] == ["connector", "connector", "total"]
    # Quoted as RFC 4180 says, and made safe for spreadsheets (no formula).
    assert rows[0]["charge_point_id"] == "'" + HOSTILE  # "=" sorts before "C"
    assert rows[1]["charge_point_id"] == "CP-2"
    for column in ("charging_s", "downtime_s", "energy_wh", "sessions", "faults"):
        assert sum(int(r[column]) for r in rows[:2]) == int(rows[2][column]), column
    assert Decimal(rows[2]["revenue_incl_vat_EUR"]) == Decimal("1469.13")
    assert rows[1]["revenue_incl_vat_EUR"] == "0"
    assert rows[1]["error_codes"] == "GroundFailure=1"  # began at `from`: in the period
    assert rows[0]["error_codes"] == ""
    assert rows[1]["average_duration_s"] == ""
    assert rows[0]["average_duration_s"] == "3600"
