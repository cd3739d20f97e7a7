"""What the sessions flow writes: :class:`SessionsRows` (session snapshots, meter
samples and signed meter values in one transaction,
:func:`store.sessions.write_sessions_batch`) through the flows'
:class:`flows.sinks.database.PostgresSink`, with the sessions outbox published to
``sessions.closed`` after every commit
(:func:`flows.sessions.outbox.sessions_outbox_publisher` as the after-commit hook)."""

from __future__ import annotations

from functools import partial
from typing import Any

import psycopg

from flows.sessions import logic
from flows.sessions.config import SessionsFlowConfig
from flows.sessions.logic import Output
from flows.sessions.outbox import sessions_outbox_publisher
from flows.sessions.rows import SignedValueRow
from flows.sinks.database import PostgresSink, postgres_sink
from store.sessions import write_sessions_batch


class SessionsRows:
    """Session rows, meter samples and signed values of a batch, in one transaction."""

    def write(self, conn: psycopg.Connection[Any], rows: list[Output]) -> None:
        sessions: list[logic.SessionRow] = []
        samples: list[logic.MeterSampleRow] = []
        signed: list[SignedValueRow] = []
        for row in rows:
            if isinstance(row, logic.MeterSampleRow):
                samples.append(row)
            elif isinstance(row, SignedValueRow):
                signed.append(row)
            else:
                sessions.append(row)
        write_sessions_batch(conn, sessions, samples, signed)


def sessions_sink(config: SessionsFlowConfig, name: str) -> PostgresSink[Output]:
    """The production rows sink; with ``publish_closed`` it publishes the outbox."""
    publisher = (
        partial(
            sessions_outbox_publisher,
            config.brokers,
            config.topics.sessions_closed,
            config.kafka_config,
        )
        if config.publish_closed
        else None
    )
    return postgres_sink(config, SessionsRows(), name, after_commit=publisher)
