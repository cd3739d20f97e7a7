"""The usage report as one self-contained, printable HTML page: summary figures, three
inline SVG charts (reports.charts) and the per-connector table. Every value is escaped;
every number shown carries the JSON's value in ``data-value`` (``data-field`` names it),
and its text is that value formatted for people without rounding (kWh to the Wh,
percentages of 4-place ratios, h:mm:ss), so page and JSON can be compared."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from html import escape
from zoneinfo import ZoneInfo

from reports.charts import energy_chart, peak_hours_chart, utilisation_chart
from reports.usage import UsageFigures, UsageReport

_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #212529; }
h1 { margin-bottom: 0.2em; }
.meta { color: #495057; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 0.6em; margin: 1em 0; }
.card { border: 1px solid #ced4da; border-radius: 4px; padding: 0.4em 0.8em; min-width: 9em; }
.card .label { font-size: 0.8em; color: #495057; display: block; }
.card .value { font-size: 1.2em; font-weight: bold; }
figure.chart { margin: 1em 0; break-inside: avoid; }
figure.chart svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.85em; }
th, td { border-bottom: 1px solid #dee2e6; padding: 0.25em 0.5em; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.n { white-space: nowrap; }
tfoot td { font-weight: bold; border-top: 2px solid #495057; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { margin: 0; }
  thead { display: table-header-group; }
  tr { break-inside: avoid; }
}
"""


def kwh(wh: int) -> str:
    """Wh as kWh, exact, with thousands separators.

    >>> kwh(1234567), kwh(0), kwh(-5)
    ('1,234.567 kWh', '0.000 kWh', '-0.005 kWh')
    """
    return f"{Decimal(wh) / 1000:,.3f} kWh"


def percent(ratio: Decimal) -> str:
    """A 4-place ratio as an exact percentage.

    >>> percent(Decimal("0.2575")), percent(Decimal("0"))
    ('25.75 %', '0.00 %')
    """
    return f"{ratio * 100:.2f} %"


def duration(seconds: int | None) -> str:
    """Seconds as h:mm:ss (hours unbounded).

    >>> duration(90061), duration(None)
    ('25:01:01', '-')
    """
    if seconds is None:
        return "-"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _number(field: str, value: object, text: str, tag: str = "td") -> str:
    css = ' class="n"' if tag == "td" else ' class="value"'
    shown = "" if value is None else str(value)
    return (
        f'<{tag}{css} data-field="{escape(field)}" data-value="{escape(shown)}">'
        f"{escape(text)}</{tag}>"
    )


# (field, heading, formatter) of the figures the table and the cards show.
COLUMNS = (
    ("utilisation", "Utilisation", percent),
    ("occupancy", "Occupancy", percent),
    ("charging_s", "Charging", duration),
    ("idle_s", "Idle", duration),
    ("downtime_s", "Downtime", duration),
    ("energy_wh", "Energy", kwh),
    ("sessions", "Sessions", str),
    ("average_duration_s", "Avg duration", duration),
    ("faults", "Faults", str),
    ("alerts", "Alerts", str),
)


def _cells(figures: UsageFigures, currencies: list[str]) -> str:
    cells = [_number(f, getattr(figures, f), fmt(getattr(figures, f))) for f, _, fmt in COLUMNS]
    revenue = {m.currency: m for m in figures.revenue}
    for currency in currencies:
        money = revenue.get(currency)
        amount = money.total_incl if money is not None else Decimal(0)
        cells.append(
            _number(f"revenue.{currency}.total_incl_vat", amount, f"{amount:,} {currency}")
        )
    return "".join(cells)


def _cards(totals: UsageFigures) -> str:
    cards = [
        f'<div class="card"><span class="label">{escape(heading)}</span>'
        f"{_number(f'totals.{field}', getattr(totals, field), fmt(getattr(totals, field)), 'span')}"
        "</div>"
        for field, heading, fmt in COLUMNS
    ]
    for money in totals.revenue:
        field = f"totals.revenue.{money.currency}.total_incl_vat"
        text = f"{money.total_incl:,} {money.currency}"
        cards.append(
            f'<div class="card"><span class="label">Revenue {escape(money.currency)} incl. VAT'
            f"</span>{_number(field, money.total_incl, text, 'span')}</div>"
        )
    return "".join(cards)


def _local(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _chart(name: str, caption: str, svg: str) -> str:
    return (
        f'<figure class="chart" id="chart-{name}" data-chart="{name}">{svg}'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def render_usage(report: UsageReport) -> str:
    """The report as a complete HTML document (no external resource)."""
    e = escape
    zone = ZoneInfo(report.time_zone)
    currencies = [m.currency for m in report.totals.revenue]
    heads = "".join(f'<th class="n">{e(h)}</th>' for _, h, _ in COLUMNS)
    heads += "".join(f'<th class="n">Revenue {e(c)} incl. VAT</th>' for c in currencies)
    rows = "\n".join(
        f'<tr data-connector="{e(c.charge_point_id)}/{c.connector_id}">'
        f"<td>{e(c.charge_point_id)}</td><td>{c.connector_id}</td><td>{e(c.site_id or '-')}</td>"
        f"{_cells(c.figures, currencies)}</tr>"
        for c in report.connectors
    )
    span = 3 + len(COLUMNS) + len(currencies)
    body = rows or f'<tr><td colspan="{span}">No connectors in scope.</td></tr>'
    scope = f"Site {report.site_id}" if report.site_id else "All sites"
    title = f"Usage report: {scope}"
    charts = "\n".join(
        (
            _chart("utilisation", "How each connector's time was spent", utilisation_chart(report)),
            _chart("peak-hours", "Sessions started by weekday and hour", peak_hours_chart(report)),
            _chart("energy", "Energy delivered per connector", energy_chart(report)),
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{e(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{e(title)}</h1>
<p class="meta" data-from="{e(report.start.isoformat())}" data-to="{e(report.end.isoformat())}">
{e(_local(report.start, zone))} to {e(_local(report.end, zone))}
(observed until {e(_local(report.observed_until, zone))}; times in {e(report.time_zone)};
{report.totals.connectors} connectors)</p>
<section class="cards">{_cards(report.totals)}</section>
{charts}
<h2>Per connector</h2>
<table>
<thead><tr><th>Station</th><th>Connector</th><th>Site</th>{heads}</tr></thead>
<tbody>
{body}
</tbody>
<tfoot><tr data-connector="total"><td colspan="3">Total</td>
{_cells(report.totals, currencies)}</tr></tfoot>
</table>
</body>
</html>
"""
