"""A station's state and load: its events folded per connector (:mod:`flows.load.minutes`).

The live power of a connector is its latest sample; it drops to 0 when the
connector goes idle (:class:`flows.load.facts.ConnectorIdle`) or its last sample is
stale (:mod:`flows.load.sources`). Readings go to the connector's current source
only.

**Station total** (:class:`StationLoad`): the sum over connectors >= 1; the
connector 0 (main meter) value only when no connector >= 1 reported power. Emitted
after every event that changes it (or its time or connection state), in batches
too. An offline station keeps its last power (it may keep charging offline) and is
flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from flows.load.facts import (
    ConnectorIdle,
    LoadEvent,
    PowerReading,
    RegisterReading,
    TransactionOpened,
)
from flows.load.minutes import ConnectorState, MinuteRow, evict, flush, record
from flows.load.sources import SOURCE_RANK, SOURCE_STALE_AFTER, STALE_AFTER

MAX_TRANSACTIONS = 32


@dataclass(frozen=True, slots=True)
class StationLoad:
    charge_point_id: str
    as_of: datetime
    power_w: float
    connectors: tuple[tuple[int, float], ...]
    offline: bool


Output = MinuteRow | StationLoad


@dataclass(slots=True)
class StationState:
    connectors: dict[int, ConnectorState] = field(default_factory=dict)
    transactions: dict[str, int] = field(default_factory=dict)  # transaction -> connector
    online: bool = True
    as_of: datetime | None = None
    last_load: StationLoad | None = None
    late_samples: int = 0


def _connector_of(state: StationState, connector: int | None, tx: str | None) -> int | None:
    if connector is not None:
        return connector
    return state.transactions.get(tx) if tx is not None else None


def _accept(
    cp: str, cid: int, conn: ConnectorState, source: str, at: datetime, rows: list[MinuteRow]
) -> bool:
    """Whether a reading from ``source`` is used. A source that takes over starts the
    connector's minutes afresh; the rows the old source changed are emitted first."""
    if conn.source == source:
        if conn.source_at is None or at > conn.source_at:
            conn.source_at = at
        return True
    if conn.source is not None:
        silent = conn.source_at is not None and at - conn.source_at > SOURCE_STALE_AFTER
        if SOURCE_RANK[source] < SOURCE_RANK[conn.source] and not silent:
            return False
    flush(cp, cid, conn, rows)
    conn.restart(source, at)
    return True


def _record(
    cp: str, state: StationState, fact: PowerReading | RegisterReading, rows: list[MinuteRow]
) -> int | None:
    """Apply one reading; returns the connector whose minutes changed, if any."""
    cid = _connector_of(state, fact.connector_id, fact.transaction_id)
    if cid is None:
        return None
    conn = state.connectors.get(cid)
    if conn is None:
        conn = state.connectors[cid] = ConnectorState()
    at = fact.at
    if (
        conn.source != fact.source or conn.source_at is None or at > conn.source_at
    ) and not _accept(cp, cid, conn, fact.source, at, rows):
        return None
    if not record(conn, fact):
        state.late_samples += 1
        return None
    return cid


def station_load(cp: str, state: StationState) -> StationLoad:
    now = state.as_of
    assert now is not None, "station_load needs an event first"
    connectors = state.connectors
    items = sorted(connectors.items()) if len(connectors) > 1 else connectors.items()
    powers: list[tuple[int, float]] = []
    outlets = False
    total: float = 0  # summed like sum() over the outlets
    main = 0.0
    for cid, c in items:
        at = c.power_at
        if at is None:
            continue
        power = 0.0 if now - at > STALE_AFTER else c.power_w
        powers.append((cid, power))
        if cid > 0:
            total += power
            outlets = True
        else:
            main = power
    return StationLoad(cp, now, total if outlets else main, tuple(powers), not state.online)


def _open_transaction(state: StationState, fact: TransactionOpened) -> None:
    state.transactions.pop(fact.transaction_id, None)
    state.transactions[fact.transaction_id] = fact.connector_id
    while len(state.transactions) > MAX_TRANSACTIONS:
        del state.transactions[next(iter(state.transactions))]


def _go_idle(state: StationState, fact: ConnectorIdle) -> None:
    cid = _connector_of(state, fact.connector_id, fact.transaction_id)
    if fact.transaction_id is not None:
        state.transactions.pop(fact.transaction_id, None)
    if cid is not None and cid in state.connectors:
        state.connectors[cid].idle(fact.at)


def apply_batch(
    state: StationState | None, events: Sequence[LoadEvent]
) -> tuple[StationState, list[MinuteRow], list[StationLoad]]:
    """Fold a station's events (in order) into its state: the minute rows changed by
    them, each once with its latest figure (rows are upserted: the table ends up as
    with one row per change), and the station's load after every event that changed
    it (site totals are published from these as they come).

    ``apply_batch(s, [e1, e2])`` leaves the same state and table as ``apply`` on
    ``e1`` then ``e2``; the loads are the same list.
    """
    state = state if state is not None else StationState()
    rows: list[MinuteRow] = []
    loads: list[StationLoad] = []
    touched: set[int] = set()
    for event in events:
        cp = event.charge_point_id
        for fact in event.facts:
            if isinstance(fact, PowerReading | RegisterReading):
                cid = _record(cp, state, fact, rows)
                if cid is not None:
                    touched.add(cid)
            elif isinstance(fact, TransactionOpened):
                _open_transaction(state, fact)
            elif isinstance(fact, ConnectorIdle):
                _go_idle(state, fact)
            else:
                state.online = fact.online
        if state.as_of is None or event.at > state.as_of:
            state.as_of = event.at
        load = station_load(cp, state)
        if load != state.last_load:
            state.last_load = load
            loads.append(load)
    if touched:
        cp = events[-1].charge_point_id
        for cid in sorted(touched):
            conn = state.connectors[cid]
            flush(cp, cid, conn, rows)
            evict(conn)
    return state, rows, loads


def apply(state: StationState | None, event: LoadEvent) -> tuple[StationState, list[Output]]:
    """Fold one event into the station's state; the changed minute rows and, if it
    changed, the station's load."""
    state, rows, loads = apply_batch(state, (event,))
    return state, [*rows, *loads]
