"""Where a connector's load comes from, and how long a figure stays current.

OCPP samples and smart meter readings (``meter.readings``) can both describe a
connector. Per connector one source is used at a time: a billing meter beats the
station's own samples, which beat a non-billing meter; a lower source takes over
only after the current one has been silent for :data:`SOURCE_STALE_AFTER`. A switch
starts the connector's minute buckets afresh (registers of different devices are not
comparable).

The live power of a connector is its latest sample until that sample is older than
:data:`STALE_AFTER` relative to the station's newest event; then it counts as 0.
"""

from __future__ import annotations

from datetime import timedelta

OCPP = "ocpp"
METER = "meter"
BILLING_METER = "meter:billing"
SOURCE_RANK = {BILLING_METER: 3, OCPP: 2, METER: 1}
SOURCE_STALE_AFTER = timedelta(minutes=10)
STALE_AFTER = timedelta(minutes=15)
