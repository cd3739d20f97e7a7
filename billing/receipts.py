"""The driver's receipt for a billed session: what was charged, line by line, the VAT
per rate, the totals and how it was paid; built from the CDR in force (and the
session's payment), so it always agrees with the invoice to the cent.

>>> from decimal import Decimal as D
>>> cdr = {"id": "C1", "session_id": "S1", "currency": "EUR",
...     "start_date_time": "2026-03-02T15:00:00Z", "end_date_time": "2026-03-02T16:00:00Z",
...     "cdr_location": {"id": "SITE", "evse_uid": "CP*1"}, "tariffs": [{"id": "T"}],
...     "total_energy": D("11"), "total_time": D("1"), "total_parking_time": D("0"),
...     "total_cost": {"excl_vat": D("3.80"), "incl_vat": D("4.60")},
...     "cost_breakdown": [
...       {"type": "ENERGY", "volume": D("11"), "billed_volume": D("11"), "price": D("0.30"),
...        "vat": D("21"), "cost": {"excl_vat": D("3.30"), "incl_vat": D("3.99")}},
...       {"type": "FLAT", "volume": D("1"), "billed_volume": D("1"), "price": D("0.50"),
...        "vat": D("21"), "cost": {"excl_vat": D("0.50"), "incl_vat": D("0.61")}}]}
>>> r = receipt(cdr, None)
>>> [(v["rate"], v["net"], v["vat"], v["gross"]) for v in r["vat"]]
[(Decimal('21'), Decimal('3.80'), Decimal('0.80'), Decimal('4.60'))]
"""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Any

_UNITS = {
    "ENERGY": "kWh",
    "TIME": "h charging",
    "PARKING_TIME": "h parked",
    "FLAT": "session",
}
_NAMES = {
    "ENERGY": "Energy",
    "TIME": "Charging time",
    "PARKING_TIME": "Parking time",
    "FLAT": "Session fee",
}


def receipt(cdr: dict[str, Any], payment: dict[str, Any] | None) -> dict[str, Any]:
    """The receipt's content (amounts as Decimal): session, place, lines, VAT per rate
    (net + VAT = gross; lines without VAT under rate null), totals, payment."""
    lines = []
    rates: dict[Decimal | None, list[Decimal]] = {}
    for line in cdr.get("cost_breakdown", []):
        kind = line["type"]
        reservation = bool(line.get("reservation"))
        excl, incl = Decimal(line["cost"]["excl_vat"]), Decimal(line["cost"]["incl_vat"])
        vat = None if line.get("vat") is None else Decimal(line["vat"])
        lines.append(
            {
                "description": ("Reservation: " if reservation else "") + _NAMES.get(kind, kind),
                "start": line.get("start_date_time"),
                "quantity": Decimal(line["billed_volume"]),
                "unit": _UNITS.get(kind, ""),
                "unit_price_excl_vat": Decimal(line["price"]),
                "vat_rate": vat,
                "excl_vat": excl,
                "incl_vat": incl,
            }
        )
        net_gross = rates.setdefault(vat, [Decimal(0), Decimal(0)])
        net_gross[0] += excl
        net_gross[1] += incl
    adjustment = cdr.get("price_limit_adjustment")
    if adjustment is not None:
        lines.append(
            {
                "description": "Minimum / maximum price adjustment",
                "start": None,
                "quantity": Decimal(1),
                "unit": "",
                "unit_price_excl_vat": Decimal(adjustment["excl_vat"]),
                "vat_rate": None,
                "excl_vat": Decimal(adjustment["excl_vat"]),
                "incl_vat": Decimal(adjustment["incl_vat"]),
            }
        )
    vat_rows = [
        {"rate": rate, "net": net, "vat": gross - net, "gross": gross}
        for rate, (net, gross) in sorted(
            rates.items(), key=lambda item: (item[0] is None, item[0] or 0)
        )
    ]
    location = cdr.get("cdr_location", {})
    return {
        "cdr_id": cdr["id"],
        "session_id": cdr.get("session_id"),
        "start": cdr["start_date_time"],
        "end": cdr["end_date_time"],
        "location": location.get("id"),
        "evse": location.get("evse_uid"),
        "tariff_id": cdr["tariffs"][0]["id"] if cdr.get("tariffs") else None,
        "currency": cdr["currency"],
        "energy_kwh": Decimal(cdr["total_energy"]),
        "time_h": Decimal(cdr["total_time"]),
        "parking_h": Decimal(cdr.get("total_parking_time") or 0),
        "lines": lines,
        "vat": vat_rows,
        "total_excl_vat": Decimal(cdr["total_cost"]["excl_vat"]),
        "total_incl_vat": Decimal(cdr["total_cost"]["incl_vat"]),
        "payment": payment,
        "signed_data": cdr.get("signed_data") is not None,
    }


_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 50em; }
table { border-collapse: collapse; width: 100%; margin: 1em 0; }
th, td { border-bottom: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
td.n, th.n { text-align: right; }
@media print { body { margin: 0; } }
"""


def receipt_html(r: dict[str, Any]) -> str:
    """The receipt as a printable page (every value escaped).

    >>> from decimal import Decimal as D
    >>> page = receipt_html({"cdr_id": "<C1>", "session_id": "S", "start": "s", "end": "e",
    ...     "location": "L", "evse": "E", "tariff_id": "T", "currency": "EUR",
    ...     "energy_kwh": D(1), "time_h": D(1), "parking_h": D(0), "lines": [], "vat": [],
    ...     "total_excl_vat": D(0), "total_incl_vat": D(0), "payment": None,
    ...     "signed_data": False})
    >>> "&lt;C1&gt;" in page and "<C1>" not in page
    True
    """
    e, cur = escape, escape(r["currency"])

    def money(value: Decimal) -> str:
        return f"{e(str(value))} {cur}"

    rows = "\n".join(
        f"<tr><td>{e(line['description'])}</td>"
        f'<td class="n">{e(str(line["quantity"]))} {e(line["unit"])}</td>'
        f'<td class="n">{money(line["unit_price_excl_vat"])}</td>'
        f'<td class="n">{e("-" if line["vat_rate"] is None else str(line["vat_rate"]) + " %")}</td>'
        f'<td class="n">{money(line["excl_vat"])}</td>'
        f'<td class="n">{money(line["incl_vat"])}</td></tr>'
        for line in r["lines"]
    )
    vat_rows = "\n".join(
        f"<tr><td>{e('no VAT' if v['rate'] is None else str(v['rate']) + ' %')}</td>"
        f'<td class="n">{money(v["net"])}</td><td class="n">{money(v["vat"])}</td>'
        f'<td class="n">{money(v["gross"])}</td></tr>'
        for v in r["vat"]
    )
    payment = r["payment"]
    paid = (
        "Not paid through us (billed on your statement or elsewhere)."
        if payment is None
        else (
            f"{e(str(payment['provider']))}: {e(str(payment['status']))}, captured "
            f"{money(Decimal(payment['captured']))}"
            + (
                f", refunded {money(Decimal(payment['refunded']))}"
                if Decimal(payment["refunded"])
                else ""
            )
        )
    )
    signed = (
        "<p>The meter signed this session's values (Eichrecht): they are in the CDR as sent.</p>"
        if r["signed_data"]
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Receipt {e(r["cdr_id"])}</title><style>{_STYLE}</style></head>
<body>
<h1>Charging receipt</h1>
<p>Receipt <strong>{e(r["cdr_id"])}</strong> for session {e(str(r["session_id"]))}<br>
{e(str(r["start"]))} to {e(str(r["end"]))} at {e(str(r["location"]))}, {e(str(r["evse"]))}<br>
Tariff {e(str(r["tariff_id"]))}: {e(str(r["energy_kwh"]))} kWh, {e(str(r["time_h"]))} h
({e(str(r["parking_h"]))} h parked)</p>
<table>
<thead><tr><th>Item</th><th class="n">Quantity</th><th class="n">Unit price excl. VAT</th>
<th class="n">VAT</th><th class="n">Excl. VAT</th><th class="n">Incl. VAT</th></tr></thead>
<tbody>
{rows}
<tr><th colspan="4">Total</th><th class="n">{money(r["total_excl_vat"])}</th>
<th class="n">{money(r["total_incl_vat"])}</th></tr>
</tbody>
</table>
<table>
<thead><tr><th>VAT rate</th><th class="n">Net</th><th class="n">VAT</th>
<th class="n">Gross</th></tr></thead>
<tbody>
{vat_rows}
</tbody>
</table>
<p>Payment: {paid}</p>
{signed}
</body>
</html>
"""
