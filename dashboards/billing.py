"""The Billing dashboard of one currency: energy and revenue per day, site and tariff,
average price per kWh, sessions held for review, payments (captures, refunds,
failures) and the peak-usage grid (hour x weekday, in each site's time zone).

Amounts come from integer minor units (``cdrs.total_incl_minor``,
``session_payments.*_minor``) divided in SQL ``numeric`` by the currency's minor unit
(:func:`billing.money.exponent`), so they stay exact until Grafana displays them.
Credits carry negative totals; their energy is subtracted."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as gcommon
from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models import common as gcommon_model
from grafana_foundation_sdk.models import dashboard as gmodel

from billing.money import check_currency, exponent
from dashboards.common import (
    Flavour,
    Layout,
    Sql,
    board,
    site_variable,
    station_variable,
    stations_match,
    thresholds,
    unit,
)

UID_PREFIX = "chargeflow-billing"
PAYMENT_KINDS = ("captured", "refunded", "capture_failed")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def uid(currency: str) -> str:
    return f"{UID_PREFIX}-{currency.lower()}"


class BillingSql:
    """The billing panels' SQL for one currency."""

    def __init__(self, flavour: Flavour, currency: str) -> None:
        self.flavour = flavour
        self.currency = check_currency(currency)
        self.divisor = f"{10 ** exponent(self.currency)}::numeric"
        self.cdrs = (
            f"currency = '{self.currency}' AND $__timeFilter(start_date_time)"
            f" AND {stations_match('charge_point_id')}"
        )

    def _net_kwh(self, prefix: str = "") -> str:
        return (
            f"sum(CASE WHEN {prefix}credit THEN -{prefix}energy_wh"
            f" ELSE {prefix}energy_wh END) / 1000.0"
        )

    def per_day(self, what: str) -> str:
        value = self._net_kwh() if what == "energy" else f"sum(total_incl_minor) / {self.divisor}"
        return f"""
SELECT {self.flavour.day("start_date_time")} AS "time", coalesce(site_id, '(no site)') AS metric,
    {value} AS value
FROM cdrs
WHERE {self.cdrs}
GROUP BY 1, 2
ORDER BY 1, 2
"""

    def totals(self) -> str:
        return f"""
SELECT sum(total_incl_minor) / {self.divisor} AS revenue,
    {self._net_kwh()} AS energy_kwh,
    (sum(total_incl_minor) / {self.divisor}) / nullif({self._net_kwh()}, 0) AS price_per_kwh,
    count(*) FILTER (WHERE NOT credit) AS cdrs
FROM cdrs
WHERE {self.cdrs}
"""

    def by_tariff(self) -> str:
        return f"""
SELECT coalesce(body -> 'tariffs' -> 0 ->> 'id', '(none)') AS tariff,
    coalesce(site_id, '(no site)') AS site,
    count(*) FILTER (WHERE NOT credit) AS sessions,
    {self._net_kwh()} AS energy_kwh,
    sum(total_incl_minor) / {self.divisor} AS revenue,
    (sum(total_incl_minor) / {self.divisor}) / nullif({self._net_kwh()}, 0) AS price_per_kwh
FROM cdrs
WHERE {self.cdrs}
GROUP BY 1, 2
ORDER BY revenue DESC NULLS LAST, tariff, site
"""

    def payments_over_time(self) -> str:
        kinds = ", ".join(f"'{k}'" for k in PAYMENT_KINDS)
        return f"""
SELECT $__timeGroupAlias(e.at, $__interval), e.kind AS metric, count(*)::bigint AS value
FROM payment_events e JOIN session_payments p USING (session_id)
WHERE p.currency = '{self.currency}' AND e.kind IN ({kinds}) AND $__timeFilter(e.at)
    AND p.session_id IN (SELECT session_id::text FROM sessions
        WHERE {stations_match("charge_point_id")})
GROUP BY 1, 2
ORDER BY 1, 2
"""

    def payment_totals(self) -> str:
        return f"""
SELECT sum(p.captured_minor) / {self.divisor} AS captured,
    sum(p.refunded_minor) / {self.divisor} AS refunded,
    count(*) FILTER (WHERE p.status = 'failed' OR p.flagged IS NOT NULL) AS failed_or_flagged,
    sum(p.shortfall_minor) / {self.divisor} AS shortfall
FROM session_payments p
WHERE p.currency = '{self.currency}' AND $__timeFilter(p.created_at)
    AND p.session_id IN (SELECT session_id::text FROM sessions
        WHERE {stations_match("charge_point_id")})
"""

    @staticmethod
    def held_count() -> str:
        return f"""
SELECT count(*) AS held
FROM billing_reviews
WHERE status = 'held' AND {stations_match("charge_point_id")}
"""

    @staticmethod
    def held_sessions() -> str:
        return f"""
SELECT session_id AS session, charge_point_id AS station, connector_id AS connector,
    started_at, stopped_at, energy_wh / 1000.0 AS energy_kwh, quality,
    array_to_string(reasons, ', ') AS reasons, created_at AS held_since
FROM billing_reviews
WHERE status = 'held' AND {stations_match("charge_point_id")}
ORDER BY created_at
LIMIT 200
"""

    @staticmethod
    def peak_usage() -> str:
        hours = ",\n    ".join(
            f'round(sum(kwh) FILTER (WHERE hour = {h}), 1) AS "{h:02d}"' for h in range(24)
        )
        return f"""
WITH local AS (
    SELECT extract(isodow FROM l.bucket AT TIME ZONE s.time_zone)::int AS weekday,
        extract(hour FROM l.bucket AT TIME ZONE s.time_zone)::int AS hour,
        l.energy_wh / 1000.0 AS kwh
    FROM load_connector_1h l
    JOIN stations st USING (charge_point_id)
    JOIN sites s ON s.site_id = st.site_id
    WHERE $__timeFilter(l.bucket) AND l.energy_wh IS NOT NULL
        AND {stations_match("l.charge_point_id")}
)
SELECT (ARRAY[{", ".join(f"'{d}'" for d in WEEKDAYS)}])[weekday] AS weekday,
    {hours}
FROM local
GROUP BY weekday
ORDER BY weekday
"""


def _money(panel: table.Panel | stat.Panel, currency: str, *names: str) -> None:
    for name in names:
        panel.override_by_name(name, unit(f"currency{currency}"))


def _revenue(layout: Layout, q: BillingSql) -> None:
    c = q.currency
    layout.row("Energy and revenue")
    totals = (
        stat.Panel()
        .title("Revenue, energy and average price")
        .with_target(Sql(q.totals()))
        .reduce_options(gcommon.ReduceDataOptions().values(False).calcs(["lastNotNull"]))
        .override_by_name("energy_kwh", unit("kwatth"))
        .override_by_name("price_per_kwh", unit(f"currency{c}"))
        .override_by_name("cdrs", unit("none"))
    )
    _money(totals, c, "revenue")
    layout.add(totals, 24, 5)
    layout.add(
        timeseries.Panel()
        .title("Energy billed per day and site")
        .with_target(Sql(q.per_day("energy"), "time_series"))
        .unit("kwatth")
        .draw_style(gcommon_model.GraphDrawStyle.BARS)
        .stacking(gcommon.StackingConfig().mode(gcommon_model.StackingMode.NORMAL))
        .fill_opacity(80),
        12,
        8,
    )
    layout.add(
        timeseries.Panel()
        .title(f"Revenue per day and site ({c}, incl. VAT)")
        .with_target(Sql(q.per_day("revenue"), "time_series"))
        .unit(f"currency{c}")
        .draw_style(gcommon_model.GraphDrawStyle.BARS)
        .stacking(gcommon.StackingConfig().mode(gcommon_model.StackingMode.NORMAL))
        .fill_opacity(80),
        12,
        8,
    )
    by_tariff = (
        table.Panel()
        .title("Per tariff and site")
        .with_target(Sql(q.by_tariff()))
        .override_by_name("energy_kwh", unit("kwatth"))
    )
    _money(by_tariff, c, "revenue", "price_per_kwh")
    layout.add(by_tariff, 24, 8)


def _payments(layout: Layout, q: BillingSql) -> None:
    c = q.currency
    layout.row("Reviews and payments")
    layout.add(
        stat.Panel()
        .title("Sessions held for review")
        .with_target(Sql(q.held_count()))
        .unit("none")
        .thresholds(thresholds((None, "green"), (1, "orange"))),
        4,
        8,
    )
    layout.add(table.Panel().title("Held sessions").with_target(Sql(q.held_sessions())), 20, 8)
    layout.add(
        timeseries.Panel()
        .title("Captures, refunds and failed captures")
        .with_target(Sql(q.payments_over_time(), "time_series"))
        .unit("none")
        .draw_style(gcommon_model.GraphDrawStyle.BARS)
        .fill_opacity(70),
        16,
        8,
    )
    totals = (
        stat.Panel()
        .title("Payments of sessions in the range")
        .with_target(Sql(q.payment_totals()))
        .reduce_options(gcommon.ReduceDataOptions().values(False).calcs(["lastNotNull"]))
        .override_by_name("failed_or_flagged", unit("none"))
    )
    _money(totals, c, "captured", "refunded", "shortfall")
    layout.add(totals, 8, 8)


def _peak(layout: Layout, q: BillingSql) -> None:
    layout.row("Peak usage")
    grid = (
        table.Panel()
        .title("Peak usage: energy by hour and weekday (site local time)")
        .description("kWh delivered per hour of the week (load_connector_1h) in the range.")
        .with_target(Sql(q.peak_usage()))
        .unit("kwatth")
        .color_scheme(gdash.FieldColor().mode(gmodel.FieldColorModeId.CONTINUOUS_GR_YL_RD))
        .cell_options(
            gcommon_model.TableColoredBackgroundCellOptions(
                mode=gcommon_model.TableCellBackgroundDisplayMode.GRADIENT
            )
        )
        .override_by_name("weekday", [gmodel.DynamicConfigValue(id_val="unit", value="none")])
    )
    layout.add(grid, 24, 9)


def build(flavour: Flavour, currency: str = "EUR") -> gmodel.Dashboard:
    q = BillingSql(flavour, currency)
    dash = (
        board(
            uid(q.currency),
            f"chargeflow: Billing ({q.currency})",
            "Energy and revenue per day, site and tariff, average price per kWh, held"
            " sessions, payments and peak usage.",
            refresh="5m",
            since="now-30d",
        )
        .with_variable(site_variable())
        .with_variable(station_variable())
    )
    layout = Layout(dash)
    _revenue(layout, q)
    _payments(layout, q)
    _peak(layout, q)
    return dash.build()
