"""Each site's rules (``logic.SiteRules``) from the registry, and which site a station
or meter belongs to: the flow's only database read, reloaded every ``refresh_s``
(processing time; while the database is down the last rules stay in force).

This is how a limit set through the API reaches the flow (ADR 0013): the API writes
``site_limit_windows`` and the directory sees it at the next reload, a few seconds at
most. The site's base limit is ``sites.max_current_a`` (A per phase), else
``sites.capacity_w`` spread over three phases; a site with neither is not controlled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg

from bus.times import utc_now
from flows.smart_charging.logic import ConnectorRating, Needs, SiteRules
from smart_charging.inputs import DEFAULT_MIN_A, LimitWindow, SiteLimit
from smart_charging.priority import MEMBERSHIP_TIERS
from store.smart_charging import SiteRows, load_site_rules

log = logging.getLogger(__name__)
Loader = Callable[[], tuple[dict[str, SiteRows], dict[str, str], dict[str, dict[str, Any]]]]
NEEDS_KEPT = timedelta(days=2)  # charging needs older than this belong to ended sessions


def site_rules(
    rows: SiteRows, tiers: dict[str, str], needs: dict[str, dict[str, Any]]
) -> SiteRules | None:
    """A site's rules from its rows (pure); None for a site without a limit."""
    if rows.max_current_a is not None:
        a = rows.max_current_a
        base = SiteLimit((a, a, a))
    elif rows.capacity_w is not None:
        base = SiteLimit.from_kw(rows.capacity_w / 1000)
    else:
        return None
    connectors = {
        key: ConnectorRating(
            phases=phases or 3,
            min_a=DEFAULT_MIN_A if low is None else low,
            max_a=32.0 if high is None else high,
            rotation=rotation or "RST",
        )
        for key, (phases, low, high, rotation) in rows.connectors.items()
    }
    site_needs = {
        tx: Needs(departure, energy)
        for station in rows.stations
        for tx, (departure, energy) in needs.get(station, {}).items()
    }
    return SiteRules(
        site_id=rows.site_id,
        base_limit=base,
        windows=tuple(LimitWindow(s, e, SiteLimit((a, a, a))) for s, e, a in rows.windows),
        stations=dict(rows.stations),
        connectors=connectors,
        tiers={tag: MEMBERSHIP_TIERS.get(tier, 0) for tag, tier in tiers.items()},
        needs=site_needs,
        load_meters=rows.load_meters,
        resets=dict(rows.resets),
    )


class SiteDirectory:
    """The sites' rules and the station -> site and meter -> site maps, cached."""

    def __init__(self, load: Loader, refresh_s: float = 2.0) -> None:
        self._load = load
        self._refresh_s = refresh_s
        self._loaded_at: float | None = None
        self._rules: dict[str, SiteRules] = {}
        self._station_site: dict[str, str] = {}
        self._meter_site: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_database(cls, database_url: str, refresh_s: float) -> SiteDirectory:
        def load() -> tuple[dict[str, SiteRows], dict[str, str], dict[str, dict[str, Any]]]:
            with psycopg.connect(
                database_url, autocommit=True, connect_timeout=5, application_name="smart"
            ) as conn:
                return load_site_rules(conn, utc_now() - NEEDS_KEPT)

        return cls(load, refresh_s)

    def _reload(self, now: float) -> None:
        self._loaded_at = now
        try:
            sites, tiers, needs = self._load()
        except psycopg.Error as exc:
            log.warning("could not load site rules (%s); keeping the last", type(exc).__name__)
            return
        rules = {}
        for site_id, rows in sites.items():
            found = site_rules(rows, tiers, needs)
            if found is not None:
                rules[site_id] = found
        self._rules = rules
        self._station_site = {cp: s for s, r in rules.items() for cp in r.stations}
        self._meter_site = {m: s for s, r in rules.items() for m in r.load_meters}

    def _fresh(self) -> None:
        now = time.monotonic()
        if self._loaded_at is None or now - self._loaded_at >= self._refresh_s:
            self._reload(now)

    def rules(self) -> dict[str, SiteRules]:
        with self._lock:
            self._fresh()
            return self._rules

    def site_of_station(self, station: str) -> str | None:
        with self._lock:
            self._fresh()
            return self._station_site.get(station)

    def site_of_meter(self, meter_id: str) -> str | None:
        with self._lock:
            self._fresh()
            return self._meter_site.get(meter_id)
