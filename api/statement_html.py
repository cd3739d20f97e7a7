"""A customer's monthly statement as a printable HTML page (every value escaped)."""

from __future__ import annotations

from html import escape
from zoneinfo import ZoneInfo

from store.cdrs import CdrStatement

_STYLE = """
body { font-family: sans-serif; margin: 2em; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
td.n, th.n { text-align: right; }
tr.credit td { color: #a00; }
@media print { body { margin: 0; } }
"""


def render_statement(statement: CdrStatement) -> str:
    """The statement: one row per CDR (date, station, kWh, amounts excl. and incl. VAT;
    credits marked), then the totals per currency.

    >>> from store.cdrs import CdrStatement
    >>> page = render_statement(CdrStatement("<ACME>", "2026-03", "UTC", [], []))
    >>> "&lt;ACME&gt;" in page and "<ACME>" not in page
    True
    """
    e = escape
    zone = ZoneInfo(statement.time_zone)
    rows = []
    for line in statement.lines:
        kind = ' class="credit"' if line.credit else ""
        started = line.start_date_time.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        rows.append(
            f"<tr{kind}><td>{e(started)}</td>"
            f"<td>{e(line.charge_point_id)} / {line.connector_id}</td>"
            f"<td>{e(line.cdr_id)}{' (credit)' if line.credit else ''}</td>"
            f'<td class="n">{e(str(line.energy_kwh))}</td>'
            f'<td class="n">{e(str(line.total_excl_vat))} {e(line.currency)}</td>'
            f'<td class="n">{e(str(line.total_incl_vat))} {e(line.currency)}</td></tr>'
        )
    totals = [
        f'<tr><th colspan="4">Total {e(t.currency)}</th>'
        f'<td class="n">{e(str(t.total_excl_vat))} {e(t.currency)}</td>'
        f'<td class="n">{e(str(t.total_incl_vat))} {e(t.currency)}</td></tr>'
        for t in statement.totals
    ]
    body = "\n".join(rows) or '<tr><td colspan="6">No charging sessions this month.</td></tr>'
    title = f"Statement {e(statement.month)}: {e(statement.customer)}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title}</title><style>{_STYLE}</style></head>
<body>
<h1>Charging statement</h1>
<p>Customer: <strong>{e(statement.customer)}</strong><br>
Month: <strong>{e(statement.month)}</strong> ({e(statement.time_zone)})</p>
<table>
<thead><tr><th>Start</th><th>Station / connector</th><th>CDR</th>
<th class="n">kWh</th><th class="n">Excl. VAT</th><th class="n">Incl. VAT</th></tr></thead>
<tbody>
{body}
</tbody>
<tfoot>
{"".join(totals)}
</tfoot>
</table>
</body>
</html>
"""
