"""The ``load.sites`` message: a site's live load against its capacity.

Published by ``flows.load`` keyed by ``site_id`` (utf-8), JSON via msgspec. Values
are event-time: ``as_of`` is the newest measurement time over the site's stations,
``total_w`` the sum of each station's latest known power; ``published_at`` is the
flow's wall clock when it published (at most every few seconds per site).
``message_id`` is derived from the content (site, as_of, total and breakdown), so
republishing an unchanged total carries the same id and consumers de-duplicate it.

>>> from datetime import UTC, datetime
>>> t = datetime(2026, 1, 1, tzinfo=UTC)
>>> msg = SiteLoad(message_id="m", site_id="S1", published_at=t, as_of=t, total_w=11000.0,
...     capacity_w=22000, utilisation_pct=50.0, over_capacity=False, station_count=1,
...     offline_stations=0, stations=[])
>>> decode_site_load(encode_site_load(msg)) == msg
True
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from bus.codec import JsonCodec

SITE_LOAD_SCHEMA_VERSION = 1


class ConnectorPower(msgspec.Struct, kw_only=True, frozen=True):
    connector_id: int  # 1.6 connector / 2.0.1 EVSE; 0 = the station's main meter
    power_w: float


class StationPower(msgspec.Struct, kw_only=True, frozen=True):
    charge_point_id: str
    power_w: float
    as_of: datetime  # newest measurement time of this station
    offline: bool = False  # the station's connection is down (its last power is kept)
    connectors: list[ConnectorPower] = msgspec.field(default_factory=list)


class SiteLoad(msgspec.Struct, kw_only=True, frozen=True):
    message_id: str
    site_id: str
    published_at: datetime
    as_of: datetime
    total_w: float
    capacity_w: int | None  # sites.capacity_w; None when not configured
    utilisation_pct: float | None  # 100 * total_w / capacity_w, 0.1 % resolution
    over_capacity: bool  # total_w > capacity_w
    station_count: int
    offline_stations: int
    stations: list[StationPower]
    schema_version: int = SITE_LOAD_SCHEMA_VERSION


_codec = JsonCodec(SiteLoad)
encode_site_load = _codec.encode
decode_site_load = _codec.decode
