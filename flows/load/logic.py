"""Live load per connector, station and site: pure step logic, no I/O.

What the load dataflow, the bench and the tests use; each part has its own module:

Step 1, keyed by charge point: :func:`decode_event` (or :func:`parse_envelope`) turns
an envelope into a :class:`LoadEvent` of facts (:mod:`flows.load.parse`,
:mod:`flows.load.facts`); :func:`apply_batch` folds a station's events of an input
batch into its :class:`StationState` (:func:`apply` per event;
:mod:`flows.load.station`), which keeps per connector the 1-minute aggregates it
emits as :class:`MinuteRow` (:mod:`flows.load.minutes`) from one source at a time
(:mod:`flows.load.sources`), and emits the station's total as :class:`StationLoad`.

Step 2, keyed by site: :class:`SiteLogic` sums a site's stations against its
capacity and decides when to publish it (:mod:`flows.load.sites`).
"""

from __future__ import annotations

from flows.load.facts import ConnectorIdle, LoadEvent, PowerReading
from flows.load.minutes import MinuteRow
from flows.load.parse import decode_event, parse_envelope
from flows.load.sites import SiteInput, SiteLogic, SiteState, site_load
from flows.load.station import Output, StationLoad, StationState, apply, apply_batch

__all__ = [
    "ConnectorIdle",
    "LoadEvent",
    "MinuteRow",
    "Output",
    "PowerReading",
    "SiteInput",
    "SiteLogic",
    "SiteState",
    "StationLoad",
    "StationState",
    "apply",
    "apply_batch",
    "decode_event",
    "parse_envelope",
    "site_load",
]
