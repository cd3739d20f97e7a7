"""Settings of the aggregates refresher (``python -m store.aggregates``)."""

from __future__ import annotations

from runtime.settings import DatabaseSettings, LoggingSettings


class AggregatesSettings(DatabaseSettings, LoggingSettings):
    """The database to refresh and how to log; the schedule is its command line."""
