"""Root-cause grouping: one alert per broken connector, not one per symptom.

Once the station has reported a definite fault (a rule's alert that waits for the
station's healthy report: an error code, a device event, the supply out of band, a
frozen register, the station offline), the connector is out of order and maintenance is
on its way. What its telemetry shows next is mostly that fault's consequences: a lost
phase is a phase spread the connector model takes for a worn contactor pole, a tripped
connector is reported ``Faulted`` without a code, starts fail on a faulted connector, a
derating connector delivers less than offered. Those findings are folded into the open
alert of the definite fault ("also seen: ..." in its evidence, a new version when a kind
is seen for the first time) instead of opening alerts of their own.

What is folded, and what never is:

* only the kinds in :data:`CONSEQUENCES` of the root's kind (physically plausible
  effects of that fault); any other kind opens its own alert;
* on the root's connector, on every connector when the root is the station's
  (connector 0), and the station's own (connector 0) findings when the root is a
  connector's: the supply rule reads every connector's phase voltages, so a pitted
  pole's drop under load is "the supply out of band" on connector 0;
* a ground fault and a security concern are never folded: safety and intrusion are
  each their own alert whatever else is broken;
* the grouping lasts as long as the root alert is open: once the station reports the
  connector healthy (the root resolved), findings open their own alerts again.

The price: a second, independent fault of a folded kind on an already broken connector
(or, for a station-level kind, anywhere on a station with a broken connector) is told
as "also seen" on the first alert, not as an alert of its own. Maintenance
repairing the connector reads both.

>>> from bus.alerts import AlertKind as K
>>> folds(K.GRID_IRREGULARITY, 0, K.CONTACTOR_DEGRADATION, 2)
True
>>> folds(K.CONNECTOR_OVERHEATING, 1, K.CONTROLLER_FAULT, 2)  # another connector
False
>>> folds(K.CONTACTOR_DEGRADATION, 1, K.GRID_IRREGULARITY, 0)  # the station's
True
>>> folds(K.CONTACTOR_DEGRADATION, 1, K.GROUND_FAULT, 1)
False
"""

from __future__ import annotations

from bus.alerts import AlertKind, Evidence

K = AlertKind

# What each definite fault makes the telemetry of its connector (or station) show.
# A controller fault is mostly the station's generic report of a connector that tripped
# (Faulted without an error code, InternalError), so every root takes it.
CONSEQUENCES: dict[AlertKind, frozenset[AlertKind]] = {
    # Sags, swells and a lost phase: one phase low looks like a worn pole, the same
    # power at a lower voltage heats more, EVs and the station derate.
    K.GRID_IRREGULARITY: frozenset(
        {
            K.CONTACTOR_DEGRADATION,
            K.CONNECTOR_OVERHEATING,
            K.CABLE_DAMAGE,
            K.METER_FAULT,
            K.CONTROLLER_FAULT,
        }
    ),
    # A pitted pole drops one phase (or all: taken for the supply), heats its contacts
    # and fails to close (failed starts, interrupted sessions).
    K.CONTACTOR_DEGRADATION: frozenset(
        {K.GRID_IRREGULARITY, K.CONNECTOR_OVERHEATING, K.CABLE_DAMAGE, K.CONTROLLER_FAULT}
    ),
    # A hot contact derates (delivers less than offered) and trips (failed starts).
    K.CONNECTOR_OVERHEATING: frozenset(
        {K.CABLE_DAMAGE, K.CONTACTOR_DEGRADATION, K.CONTROLLER_FAULT}
    ),
    # A damaged cable or contact heats, interrupts and fails starts.
    K.CABLE_DAMAGE: frozenset(
        {K.CONNECTOR_OVERHEATING, K.CONTACTOR_DEGRADATION, K.CONTROLLER_FAULT}
    ),
    K.METER_FAULT: frozenset({K.CONTROLLER_FAULT}),
    # A controller in trouble fails starts and reboots.
    K.CONTROLLER_FAULT: frozenset({K.CONTACTOR_DEGRADATION, K.COMM_DEGRADATION}),
    K.COMM_DEGRADATION: frozenset({K.CONTROLLER_FAULT}),
    # A tripped RCD leaves the connector Faulted: starts fail.
    K.GROUND_FAULT: frozenset({K.CONTACTOR_DEGRADATION, K.CONTROLLER_FAULT}),
}

NEVER_FOLDED = frozenset({K.GROUND_FAULT, K.SECURITY})


def folds(root_kind: AlertKind, root_connector: int, kind: AlertKind, connector: int) -> bool:
    """Whether a finding of ``kind`` on ``connector`` is a consequence of an open
    definite alert of ``root_kind`` on ``root_connector``."""
    if kind in NEVER_FOLDED or kind is root_kind:
        return False
    if root_connector not in (0, connector) and connector != 0:
        return False
    return kind in CONSEQUENCES.get(root_kind, frozenset())


def with_also_seen(evidence: Evidence, also_seen: list[str]) -> Evidence:
    """The root's evidence with the consequences folded into it, in the order seen."""
    if not also_seen:
        return evidence
    return Evidence(
        at=evidence.at,
        summary=f"{evidence.summary} Also seen: {'; '.join(also_seen)}.",
        features=evidence.features,
        scores=evidence.scores,
    )


def also_seen_label(kind: AlertKind, connector: int, detector: str) -> str:
    """How a folded consequence is named in the root's evidence."""
    return f"{kind.value.replace('_', ' ')} on connector {connector} ({detector})"
