"""Usage reports: ``GET /v1/reports/usage`` as JSON, CSV (RFC 4180) or a printable HTML
page with server-side charts. Roles operator, billing, admin. docs/reports.md."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status

from api.deps import DbConn, ReportReader
from api.params import TIMESTAMP_DESCRIPTION, SiteFilter, Timestamp, range_error, require_ordered
from api.problems import AUTHENTICATED, NOT_FOUND, ProblemError
from api.routers.cdrs import spreadsheet_text
from api.schemas.reports import UsageReportPublic
from reports.usage import UsageFigures, UsageReport, usage_report
from store import reports as report_store
from store.sites import site_time_zone

router = APIRouter(tags=["reports"], responses=AUTHENTICATED)

# A quarter and a bit: the longest period one request computes (a year is 4 requests).
MAX_PERIOD = timedelta(days=93)


class ReportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    HTML = "html"


MEDIA_TYPES = {
    ReportFormat.JSON: "application/json",
    ReportFormat.CSV: "text/csv",
    ReportFormat.HTML: "text/html",
}


def negotiated(accept: str | None) -> ReportFormat:
    """The format an ``Accept`` header asks for first among ours (parameters and q
    ignored: the first one listed wins); JSON when it names none of them.

    >>> negotiated("text/html,application/xhtml+xml,*/*;q=0.8").value
    'html'
    >>> negotiated("text/csv; q=0.9"), negotiated(None), negotiated("*/*")
    (<ReportFormat.CSV: 'csv'>, <ReportFormat.JSON: 'json'>, <ReportFormat.JSON: 'json'>)
    """
    by_type = {media: fmt for fmt, media in MEDIA_TYPES.items()}
    for part in (accept or "").split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in by_type:
            return by_type[media]
    return ReportFormat.JSON


# --------------------------------------------------------------------------- CSV

FIGURE_COLUMNS = (
    "period_s",
    "charging_s",
    "idle_s",
    "occupied_s",
    "available_s",
    "downtime_s",
    "unknown_s",
    "utilisation",
    "occupancy",
    "energy_wh",
    "sessions",
    "average_duration_s",
    "faults",
    "alerts",
)


def csv_header(currencies: list[str]) -> list[str]:
    money = [f"revenue_{kind}_vat_{c}" for c in currencies for kind in ("excl", "incl")]
    return ["row", "charge_point_id", "connector_id", "site_id", *FIGURE_COLUMNS,
            "error_codes", *money]  # fmt: skip


def _figure_cells(figures: UsageFigures, currencies: list[str]) -> list[Any]:
    cells: list[Any] = [getattr(figures, name) for name in FIGURE_COLUMNS]
    cells = ["" if c is None else c for c in cells]
    cells.append(";".join(f"{code}={n}" for code, n in figures.error_codes.items()))
    revenue = {m.currency: m for m in figures.revenue}
    for currency in currencies:
        money = revenue.get(currency)
        cells += [money.total_excl, money.total_incl] if money else [0, 0]
    return cells


def usage_csv(report: UsageReport) -> str:
    """One row per connector, then the network's totals (``row`` = ``total``); revenue in
    two columns per currency; CRLF line ends and quoting as RFC 4180 says."""
    currencies = [m.currency for m in report.totals.revenue]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(csv_header(currencies))
    for c in report.connectors:
        writer.writerow(
            [
                "connector",
                spreadsheet_text(c.charge_point_id),
                c.connector_id,
                spreadsheet_text(c.site_id),
                *_figure_cells(c.figures, currencies),
            ]
        )
    writer.writerow(
        ["total", "", "", spreadsheet_text(report.site_id),
         *_figure_cells(report.totals, currencies)]
    )  # fmt: skip
    return buffer.getvalue()


def _render_html(report: UsageReport) -> str:
    # Imported on the first HTML report: matplotlib and numpy stay out of the API
    # process until a page is asked for (tests/unit/test_import_weight.py).
    from reports.html import render_usage

    return render_usage(report)


# --------------------------------------------------------------------------- the route

From = Annotated[
    Timestamp, Query(alias="from", description=f"Start (inclusive). {TIMESTAMP_DESCRIPTION}")
]
To = Annotated[
    Timestamp,
    Query(
        alias="to",
        description=f"End (exclusive), at most {MAX_PERIOD.days} days after `from`. "
        f"{TIMESTAMP_DESCRIPTION}",
    ),
]


@router.get(
    "/v1/reports/usage",
    response_model=UsageReportPublic,
    summary="Usage report: utilisation, idle time, energy, revenue, downtime, peak hours",
    description="Per connector and for the network (or one site) over [`from`, `to`): "
    "utilisation and occupancy from the status history, idle (plugged in, not charging) "
    "and down time, energy from meter registers, sessions and their mean duration, "
    "revenue from issued CDRs per currency, faults and alerts, and a weekday x hour grid "
    "in the site's time zone (UTC without a site). `format` (json, csv, html) or else "
    "the Accept header picks the representation; the HTML page has server-side charts "
    "and prints to PDF. `from` must be earlier than `to`, at most "
    f"{MAX_PERIOD.days} days apart (else 422); an unknown site answers 404.",
    responses={
        200: {
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "text/html": {"schema": {"type": "string"}},
            }
        },
        **NOT_FOUND,
    },
)
async def usage(
    _principal: ReportReader,
    conn: DbConn,
    since: From,
    until: To,
    site: SiteFilter = None,
    output: Annotated[
        ReportFormat | None,
        Query(alias="format", description="json, csv or html (default: by Accept, else json)"),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    require_ordered(since, until)
    if until - since > MAX_PERIOD:
        raise range_error(f"the period may be at most {MAX_PERIOD.days} days long", "to")
    time_zone = "UTC"
    if site is not None:
        zone = await site_time_zone(conn, site)
        if zone is None:
            raise ProblemError(status.HTTP_404_NOT_FOUND, f"site {site!r} not found")
        time_zone = zone
    inputs = await report_store.usage_inputs(
        conn,
        start=since,
        end=until,
        observed_until=datetime.now(UTC),
        site_id=site,
        time_zone=time_zone,
    )
    report = usage_report(inputs)
    chosen = output or negotiated(accept)
    if chosen is ReportFormat.CSV:
        return Response(
            usage_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
        )
    if chosen is ReportFormat.HTML:
        # matplotlib takes a few hundred ms per page: off the event loop.
        page = await asyncio.to_thread(_render_html, report)
        return Response(page, media_type="text/html; charset=utf-8")
    return UsageReportPublic.of(report)
