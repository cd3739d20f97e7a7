"""The smart-charging flow's decisions for one site (pure: no I/O, no clock).

The site's events arrive in order (:class:`SiteControl` is the state Bytewax keeps per
site and snapshots); :func:`apply` folds one in and returns what to do:

- **Rounds.** A round resolves the site's limit at the telemetry instant
  (``smart_charging.inputs.limit_at``), allocates (``smart_charging.allocate``), carries
  each session's turn (``next_turns``) and sends what ``hysteresis.updates_to_send`` says
  is worth it, as TxProfiles (stack level 1, one per connector, limit in A). A round runs
  on a session's start or end, another load's reading (a site meter with role
  ``non_controllable_load``), a change of the site's rules (limits, windows, needs,
  ratings), the EV's own needs (2.0.1 NotifyEVChargingNeeds), a limit window's start or
  end (a lower limit ``lead`` early), a rejected or lost profile, a station marked
  non-compliant, a reading of a station budgeted at full draw, a change a station's rate
  limit held back once it may go (``hysteresis.held_until``), and whenever
  ``rotation_period`` has passed since the last round (telemetry time: a replay at any
  speed decides the same).
- **Fail-safe.** Every station of the site gets a ChargePointMaxProfile at stack level 0
  on connector 0: its connectors' maximum now, falling to the station's share of the
  site's limit ``lease`` after the profile's start (absolute, telemetry time). The flow
  renews it every half lease; when it stops, each station ends up within its share and
  the site within its limit whatever the sessions do. A station budgeted at full draw
  (it rejects or ignores profiles) counts at its ceiling in the shares. A
  TxDefaultProfile (stack level 0, connector 0) leased the same way holds a new session
  at 0 A until its first TxProfile (seconds), and at the share once the lease ran out:
  the sessions running keep their TxProfiles, so the site stays within its limit at
  every moment the flow is away, not only after the lease.
- **Non-compliance.** A station whose connector draws more than its accepted limit plus
  ``tolerance_a``, ``reaction_window`` after the station accepted it, is marked
  non-compliant and budgeted at full draw from then on (the allocator's fixed budget).
  A station that rejects a TxProfile is budgeted so too; one that did not get it
  (offline, timed out), or that the gateway saw go offline, counts as offline until it
  connects or sends a reading again, and then gets its limits and fail-safe afresh. An operator's
  reset of the station (its count of resets in the registry rises) clears these marks:
  it gets its limits afresh and is marked again if it still ignores or rejects them.

- **The EV's needs.** What a 2.0.1 EV declares over ISO 15118 (departure, energy, its
  AC current range, single- or two-phase charging) holds for the session open on that
  connector, or for the next one to start there within ``EARLY_NEEDS`` (the EV may
  speak before the station reports the transaction). Needs the driver declared through
  the API for the session take precedence: the driver is explicit, the car's departure
  is often a default. The EV's range narrows the connector's (never below its minimum),
  so capacity the car cannot take goes to the others.

Size: one site's control is one state machine (rounds, fail-safes, compliance and
outcomes change the same state and trigger one another); its data lives in ``events``.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flows.smart_charging.events import (
    AllocationView,
    Connection,
    ConnectorRating,
    Drawn,
    Ended,
    Event,
    Key,
    Needs,
    NeedsDeclared,
    NonCompliant,
    OtherLoad,
    Outcome,
    Output,
    ProfileRequest,
    RulesChanged,
    SiteRules,
    Started,
)
from smart_charging.allocator import allocate, next_turns
from smart_charging.hysteresis import UpdatePolicy, held_until, updates_to_send
from smart_charging.inputs import (
    SessionDemand,
    Site,
    SiteLimit,
    Turn,
    limit_at,
)
from smart_charging.priority import Policy

COMMAND_NAMESPACE = uuid.UUID("5a1c2f0e-9d3b-4c6a-8e7f-0b1d2c3e4f5a")
TX_STACK_LEVEL = 1
FAIL_SAFE_PROFILE_ID = 900_001  # ChargePointMaxProfile, connector 0, stack level 0
DEFAULT_PROFILE_ID = 900_002  # TxDefaultProfile, connector 0, stack level 0
TX_PROFILE_BASE = 900_100  # + connector id: one TxProfile per connector
MAX_PENDING = 10_000
EARLY_NEEDS = timedelta(minutes=10)  # needs before the start they belong to


@dataclass(frozen=True, slots=True)
class ControlPolicy:
    """``reaction_window``: how long a station has to follow an accepted limit.
    ``tolerance_a``: the draw above the limit that still counts as following it.
    ``lease``: how long the fail-safe cap stays at the connectors' maximum; renewed every
    half lease. ``lead``: how early a lower limit announced ahead (a window that begins
    later) is applied, so that the stations have followed it when it begins. ``retry``:
    how soon a fail-safe that did not reach the station is sent again."""

    reaction_window: timedelta = timedelta(seconds=30)
    tolerance_a: float = 1.0
    lease: timedelta = timedelta(minutes=30)
    lead: timedelta = timedelta(seconds=10)
    retry: timedelta = timedelta(seconds=60)
    update: UpdatePolicy = field(default_factory=UpdatePolicy)
    allocation: Policy = field(default_factory=Policy)


# ------------------------------------------------------------------------------- state


@dataclass(slots=True)
class ActiveSession:
    transaction_id: str
    id_tag: str | None
    started_at: datetime
    measured_a: float | None = None
    declared: NeedsDeclared | None = None  # what the EV said for this session


@dataclass(slots=True)
class SiteControl:
    """Everything the flow keeps per site (pickled in snapshots)."""

    site_id: str = ""
    rules: SiteRules | None = None
    now: datetime | None = None  # the newest telemetry instant seen
    sessions: dict[Key, ActiveSession] = field(default_factory=dict)
    turns: dict[Key, Turn] = field(default_factory=dict)
    sent: dict[Key, float] = field(default_factory=dict)  # the limit the station has
    confirmed_at: dict[Key, datetime] = field(default_factory=dict)  # accepted (telemetry)
    last_update: dict[str, datetime] = field(default_factory=dict)
    non_compliant: dict[str, datetime] = field(default_factory=dict)
    rejecting: set[str] = field(default_factory=set)
    offline: set[str] = field(default_factory=set)
    fail_safe_at: dict[str, datetime] = field(default_factory=dict)
    fail_safe_share: dict[str, float] = field(default_factory=dict)
    other_load: dict[str, float] = field(default_factory=dict)
    pending: dict[str, tuple[str, Key | None]] = field(default_factory=dict)
    early_needs: dict[Key, NeedsDeclared] = field(default_factory=dict)
    last_round: datetime | None = None
    increases_after: datetime | None = None  # increases held back behind decreases
    held_until: datetime | None = None  # a change the stations' rate limit holds back
    seq: int = 0


def apply(state: SiteControl, event: Event, policy: ControlPolicy) -> list[Output]:
    """Fold ``event`` into ``state``; what to send and store."""
    due = _fold(state, event, policy)
    if state.rules is None or state.now is None:
        return []
    out: list[Output] = []
    rotation = policy.allocation.rotation_period
    if (
        state.last_round is None
        or state.now >= state.last_round + rotation
        or _window_edge_passed(state.rules, state.last_round, state.now)
        or _window_edge_passed(state.rules, state.last_round + policy.lead, state.now + policy.lead)
        or (state.increases_after is not None and state.now >= state.increases_after)
        or (state.held_until is not None and state.now >= state.held_until)
    ):
        due = True
    if isinstance(due, NonCompliant):
        out.append(due)
    if due:
        out.extend(_round(state, policy))
    out.extend(_fail_safes(state, policy))
    return out


def _window_edge_passed(rules: SiteRules, since: datetime, now: datetime) -> bool:
    """A limit window began or ended after the last round: the limit changed."""
    return any(since < edge <= now for w in rules.windows for edge in (w.start, w.end))


def _advance(state: SiteControl, at: datetime) -> None:
    if state.now is None or at > state.now:
        state.now = at


def _fold(state: SiteControl, event: Event, policy: ControlPolicy) -> bool | NonCompliant:
    """Update the state; True (or the marking) when a round is due."""
    if isinstance(event, RulesChanged):
        changed = state.rules != event.rules
        if changed and state.rules is not None:
            _needs_declared(state, state.rules, event.rules)
            _reset_by_operator(state, state.rules, event.rules)
        state.rules, state.site_id = event.rules, event.rules.site_id
        return changed
    if isinstance(event, Outcome):
        return _outcome(state, event, policy)
    _advance(state, event.at)
    if isinstance(event, Started):
        key = (event.station_id, event.connector_id)
        early = state.early_needs.pop(key, None)
        declared = early if early is not None and event.at - early.at <= EARLY_NEEDS else None
        state.sessions[key] = ActiveSession(
            event.transaction_id, event.id_tag, event.at, declared=declared
        )
        return True
    if isinstance(event, NeedsDeclared):
        return _ev_needs(state, event)
    if isinstance(event, Connection):
        return _connection(state, event)
    if isinstance(event, Ended):
        key = (event.station_id, event.connector_id)
        found = state.sessions.get(key)
        if found is None or found.transaction_id != event.transaction_id:
            return False
        del state.sessions[key]
        for kept in (state.turns, state.sent, state.confirmed_at):
            kept.pop(key, None)
        return True
    if isinstance(event, OtherLoad):
        if state.rules is None or event.meter_id not in state.rules.load_meters:
            return False
        state.other_load[event.meter_id] = max(0.0, event.current_a)
        return True
    return _drawn(state, event, policy)


def _needs_declared(state: SiteControl, old: SiteRules, new: SiteRules) -> None:
    """A driver who declares (or changes) a departure or an energy need is worth a
    profile write now: the station's rate limit does not hold that session's change."""
    for (station, _), session in state.sessions.items():
        tx = session.transaction_id
        if old.needs.get(tx) != new.needs.get(tx):
            state.last_update.pop(station, None)


def _connection(state: SiteControl, event: Connection) -> bool:
    """Offline: budgeted at full draw (it keeps charging on what it has, and gets
    nothing new); back online: its limits afresh."""
    station = event.station_id
    if state.rules is None or station not in state.rules.stations:
        return False
    if not event.online:
        if station in state.offline:
            return False
        state.offline.add(station)
        return True
    if station not in state.offline:
        return False
    state.offline.discard(station)
    _send_afresh(state, station)
    state.fail_safe_at.pop(station, None)  # it may have rebooted without its profiles
    return True


def _send_afresh(state: SiteControl, station: str) -> None:
    """Forget the limits the station has: the next round sends its sessions theirs."""
    for key in [k for k in state.sent if k[0] == station]:
        del state.sent[key]
        state.confirmed_at.pop(key, None)


def _reset_by_operator(state: SiteControl, old: SiteRules, new: SiteRules) -> None:
    """A station the operator reset (its count of resets rose) is controlled again: its
    marks (non-compliant, rejecting, offline) go and it gets its limits afresh."""
    for station, count in new.resets.items():
        if count <= old.resets.get(station, 0):
            continue
        state.non_compliant.pop(station, None)
        state.rejecting.discard(station)
        state.offline.discard(station)
        state.last_update.pop(station, None)
        _send_afresh(state, station)


def _ev_needs(state: SiteControl, event: NeedsDeclared) -> bool:
    key = (event.station_id, event.connector_id)
    session = state.sessions.get(key)
    if session is None:
        state.early_needs[key] = event
        return False
    if session.declared is not None and _same_needs(session.declared, event):
        return False  # repeated (renegotiation with nothing new): no write worth it
    session.declared = event
    state.last_update.pop(event.station_id, None)  # as for needs from the API
    return True


def _same_needs(a: NeedsDeclared, b: NeedsDeclared) -> bool:
    return (a.needs, a.ev_min_a, a.ev_max_a, a.phases) == (
        b.needs,
        b.ev_min_a,
        b.ev_max_a,
        b.phases,
    )


def _drawn(state: SiteControl, event: Drawn, policy: ControlPolicy) -> bool | NonCompliant:
    key = (event.station_id, event.connector_id)
    session = state.sessions.get(key)
    if session is None:
        if event.transaction_id is None:
            return False
        # A session that began before this state (a start before the flow ran).
        session = ActiveSession(event.transaction_id, None, event.at)
        state.sessions[key] = session
        due: bool | NonCompliant = True
    else:
        due = False
    session.measured_a = event.current_a
    if event.station_id in state.offline:
        state.offline.discard(event.station_id)  # it talks again: resend its limits
        _send_afresh(state, event.station_id)
        due = True
    marked = _compliance(state, key, event, policy)
    if marked is not None:
        return marked
    if _budgeted(state, event.station_id):
        due = True
    return due


def _compliance(
    state: SiteControl, key: Key, event: Drawn, policy: ControlPolicy
) -> NonCompliant | None:
    limit, since = state.sent.get(key), state.confirmed_at.get(key)
    if limit is None or since is None or event.station_id in state.non_compliant:
        return None
    if event.at < since + policy.reaction_window:
        return None
    if event.current_a <= limit + policy.tolerance_a:
        return None
    state.non_compliant[event.station_id] = event.at
    return NonCompliant(event.station_id, event.connector_id, event.at, limit, event.current_a)


def _outcome(state: SiteControl, event: Outcome, policy: ControlPolicy) -> bool:
    found = state.pending.pop(event.command_id, None)
    if found is None:
        return False
    station, key = found
    if event.status == "accepted":
        if key is not None and state.now is not None:
            state.confirmed_at[key] = state.now
        return False
    if event.status == "rejected":
        state.rejecting.add(station)  # it refuses profiles: budgeted at full draw
    if key is None:
        # A fail-safe that did not land: sent again ``retry`` after this attempt.
        sent = state.fail_safe_at.get(station)
        if sent is not None:
            state.fail_safe_at[station] = sent - policy.lease / 2 + policy.retry
        return event.status == "rejected"
    if event.status != "rejected":  # failed, timed out, offline, expired: maybe not there
        state.offline.add(station)
        state.sent.pop(key, None)
    state.confirmed_at.pop(key, None)
    return True


def _budgeted(state: SiteControl, station: str) -> bool:
    return station in state.rejecting or station in state.offline or station in state.non_compliant


def _demands(state: SiteControl, rules: SiteRules) -> list[SessionDemand]:
    demands = []
    for key, session in sorted(state.sessions.items()):
        rating = _with_ev(rules.connectors.get(key, ConnectorRating()), session.declared)
        needs = rules.needs.get(session.transaction_id) or (
            session.declared.needs if session.declared is not None else Needs()
        )
        station = key[0]
        demands.append(
            SessionDemand(
                station_id=station,
                connector_id=key[1],
                started_at=session.started_at,
                phases=rating.phases,
                rotation=rating.rotation,
                min_a=rating.min_a,
                max_a=rating.max_a,
                measured_a=session.measured_a,
                controllable=station not in state.rejecting,
                online=station not in state.offline,
                compliant=station not in state.non_compliant,
                tier=rules.tiers.get(session.id_tag or "", 0),
                departure=needs.departure,
                energy_needed_wh=needs.energy_wh,
                turn=state.turns.get(key, Turn()),
            )
        )
    return demands


def _with_ev(rating: ConnectorRating, ev: NeedsDeclared | None) -> ConnectorRating:
    """The connector's rating narrowed to what the EV said it takes.

    >>> ev = NeedsDeclared("CS", 1, datetime(2026, 1, 1), Needs(), 8.0, 16.0, 1)
    >>> _with_ev(ConnectorRating(phases=3, min_a=6.0, max_a=32.0), ev)
    ConnectorRating(phases=1, min_a=8.0, max_a=16.0, rotation='RST')
    >>> _with_ev(ConnectorRating(min_a=6.0, max_a=32.0), NeedsDeclared(
    ...     "CS", 1, datetime(2026, 1, 1), Needs(), None, 4.0)).max_a  # never below the min
    6.0
    """
    if ev is None:
        return rating
    max_a = (
        rating.max_a if ev.ev_max_a is None else max(rating.min_a, min(rating.max_a, ev.ev_max_a))
    )
    min_a = rating.min_a if ev.ev_min_a is None else min(max_a, max(rating.min_a, ev.ev_min_a))
    phases = rating.phases if ev.phases is None else max(1, min(rating.phases, ev.phases))
    return ConnectorRating(phases=phases, min_a=min_a, max_a=max_a, rotation=rating.rotation)


def site_limit_now(rules: SiteRules, at: datetime, lead: timedelta = timedelta(0)) -> SiteLimit:
    """The limit at ``at``, lowered already by what will be in force ``lead`` later."""
    now = limit_at(rules.base_limit, rules.windows, at)
    return now.lowest(limit_at(rules.base_limit, rules.windows, at + lead))


def _round(state: SiteControl, policy: ControlPolicy) -> list[Output]:
    rules, now = state.rules, state.now
    assert rules is not None
    assert now is not None
    state.last_round = now
    other = sum(state.other_load.values())
    demands = _demands(state, rules)
    site = Site(rules.site_id, site_limit_now(rules, now, policy.lead), rules.voltage_v)
    allocation = allocate(site, (other, other, other), demands, now, policy.allocation)
    state.turns = next_turns(demands, allocation)
    out: list[Output] = []
    updates = updates_to_send(allocation, state.sent, state.last_update, now, policy.update)
    decreases = [u for u in updates if u.previous_a is not None and u.current_a < u.previous_a]
    state.increases_after = None
    if decreases and len(decreases) < len(updates):
        # Capacity moves from some sessions to others: the decreases go now, the
        # increases once the stations had ``lead`` to follow them (commands to different
        # stations arrive in no particular order; an increase first would overshoot).
        updates = tuple(decreases)
        state.increases_after = now + policy.lead
    for update in updates:
        key = (update.station_id, update.connector_id)
        session = state.sessions[key]
        out.append(
            _request(
                state,
                update.station_id,
                key,
                connector_id=update.connector_id,
                profile_id=TX_PROFILE_BASE + update.connector_id,
                stack_level=TX_STACK_LEVEL,
                purpose="tx",
                periods=((0, update.current_a),),
                transaction_id=session.transaction_id,
                start_schedule=None,
                why=update.why,
            )
        )
        state.sent[key] = update.current_a
        state.confirmed_at.pop(key, None)
        state.last_update[update.station_id] = now
    state.held_until = held_until(allocation, state.sent, state.last_update, policy.update)
    budgeted = tuple(sorted(s for s in rules.stations if s in state.rejecting | state.offline))
    transactions = {k: s.transaction_id for k, s in state.sessions.items()}
    out.append(
        AllocationView(rules.site_id, allocation, transactions, dict(state.non_compliant), budgeted)
    )
    return out


def station_ceiling_a(rules: SiteRules, station: str) -> float:
    """The most a station's connectors draw together (A per phase; unknown: 32 A)."""
    return sum(r.max_a for k, r in rules.connectors.items() if k[0] == station) or 32.0


def fail_safe_shares(
    rules: SiteRules,
    at: datetime,
    fixed: frozenset[str] = frozenset(),
    lead: timedelta = timedelta(0),
) -> dict[str, float]:
    """Each station's share of the site's limit (A per phase, in 0.1 A, rounded down):
    a station budgeted at full draw (``fixed``: it rejects or ignores profiles) keeps its
    ceiling, the others split what is left by their connectors' maxima, so that all the
    shares together stay within the limit."""
    limit = min(site_limit_now(rules, at, lead).per_phase_a)
    ceilings = {station: station_ceiling_a(rules, station) for station in rules.stations}
    left = max(0.0, limit - sum(c for s, c in ceilings.items() if s in fixed))
    total = sum(c for s, c in ceilings.items() if s not in fixed)
    return {
        s: c if s in fixed else math.floor(left * c / total * 10) / 10
        for s, c in ceilings.items()
        if s in fixed or total > 0
    }


def _fail_safes(state: SiteControl, policy: ControlPolicy) -> list[Output]:
    rules, now = state.rules, state.now
    assert rules is not None
    assert now is not None
    out: list[Output] = []
    fixed = frozenset(state.rejecting | set(state.non_compliant))
    shares = fail_safe_shares(rules, now, fixed, policy.lead)
    for station in sorted(rules.stations):
        share = shares.get(station)
        if share is None or station in state.rejecting:
            continue  # a station that rejects profiles is budgeted, not asked again
        last = state.fail_safe_at.get(station)
        changed = state.fail_safe_share.get(station) != share
        if last is not None and not changed and now < last + policy.lease / 2:
            continue
        ceiling = max(share, station_ceiling_a(rules, station))
        lease_s = int(policy.lease.total_seconds())
        out.append(
            _request(
                state,
                station,
                None,
                connector_id=0,
                profile_id=FAIL_SAFE_PROFILE_ID,
                stack_level=0,
                purpose="charge_point_max",
                periods=((0, ceiling), (lease_s, share)),
                transaction_id=None,
                start_schedule=now,
                why="fail-safe",
            )
        )
        out.append(
            _request(
                state,
                station,
                None,
                connector_id=0,
                profile_id=DEFAULT_PROFILE_ID,
                stack_level=0,
                purpose="tx_default",
                periods=((0, 0.0), (lease_s, share)),
                transaction_id=None,
                start_schedule=now,
                why="fail-safe default",
            )
        )
        state.fail_safe_at[station] = now
        state.fail_safe_share[station] = share
    return out


def _request(
    state: SiteControl,
    station: str,
    key: Key | None,
    *,
    connector_id: int,
    profile_id: int,
    stack_level: int,
    purpose: str,
    periods: tuple[tuple[int, float], ...],
    transaction_id: str | None,
    start_schedule: datetime | None,
    why: str,
) -> ProfileRequest:
    assert state.rules is not None
    assert state.now is not None
    state.seq += 1
    command_id = str(uuid.uuid5(COMMAND_NAMESPACE, f"{state.site_id}/{state.seq}"))
    state.pending[command_id] = (station, key)
    while len(state.pending) > MAX_PENDING:  # outcomes that never came: forget the oldest
        del state.pending[next(iter(state.pending))]
    return ProfileRequest(
        command_id=command_id,
        station_id=station,
        ocpp_version=state.rules.stations.get(station, "1.6"),
        connector_id=connector_id,
        profile_id=profile_id,
        stack_level=stack_level,
        purpose=purpose,
        periods=periods,
        transaction_id=transaction_id,
        start_schedule=start_schedule,
        at=state.now,
        why=why,
    )


# The events and outputs are re-exported: callers need one import for the flow's logic.
__all__ = [
    "COMMAND_NAMESPACE",
    "DEFAULT_PROFILE_ID",
    "FAIL_SAFE_PROFILE_ID",
    "MAX_PENDING",
    "TX_PROFILE_BASE",
    "TX_STACK_LEVEL",
    "ActiveSession",
    "AllocationView",
    "Connection",
    "ConnectorRating",
    "ControlPolicy",
    "Drawn",
    "Ended",
    "Event",
    "Key",
    "Needs",
    "NeedsDeclared",
    "NonCompliant",
    "OtherLoad",
    "Outcome",
    "Output",
    "ProfileRequest",
    "RulesChanged",
    "SiteControl",
    "SiteRules",
    "Started",
    "apply",
    "fail_safe_shares",
    "site_limit_now",
    "station_ceiling_a",
]
