"""The faults flow's step: one :class:`models.station.StationDiagnostics` per charge
point (the Bytewax state of its key, pickled every epoch), fed the station's envelopes
of a batch in input order; its alert versions and health snapshots are the rows.

>>> from datetime import UTC, datetime
>>> from bus.envelope import Envelope, Kind
>>> t = datetime(2026, 7, 1, 12, tzinfo=UTC)
>>> env = Envelope(message_id="m1", charge_point_id="CP1", received_at=t, measured_at=t,
...     kind=Kind.OCPP_CALL, ocpp_version="1.6", action="StatusNotification",
...     payload={"connectorId": 2, "errorCode": "GroundFailure", "status": "Faulted"})
>>> state, rows = apply_batch(None, [env])
>>> state.station_id, [(r.alert_kind.value, r.connector_id) for r in rows]
('CP1', [('ground_fault', 2)])
"""

from __future__ import annotations

import pickle

from bytewax.operators import StatefulBatchLogic

from bus.alerts import ConnectorHealth, FaultAlert
from bus.envelope import Envelope
from models.station import StationDiagnostics

Output = FaultAlert | ConnectorHealth


def apply_batch(
    state: StationDiagnostics | None, envelopes: list[Envelope]
) -> tuple[StationDiagnostics | None, list[Output]]:
    """Feed ``envelopes`` (one station's, in order) to its diagnostics (created on the
    first); the alert versions and health snapshots they produced, in order."""
    rows: list[Output] = []
    for envelope in envelopes:
        if state is None:
            state = StationDiagnostics(envelope.charge_point_id)
        outcome = state.update(envelope)
        rows.extend(outcome.alerts)
        rows.extend(outcome.health)
    return state, rows


class FaultsLogic(StatefulBatchLogic[list[Envelope], list[Output], bytes]):
    """The per-charge-point state of the ``diagnostics`` step; ``snapshot`` pickles it."""

    def __init__(self, resume: bytes | None) -> None:
        self.state: StationDiagnostics | None = None if resume is None else pickle.loads(resume)

    def on_batch(self, values: list[list[Envelope]]) -> tuple[list[list[Output]], bool]:
        envelopes = values[0] if len(values) == 1 else [e for chunk in values for e in chunk]
        self.state, rows = apply_batch(self.state, envelopes)
        return ([rows] if rows else []), StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)
