"""The smart-charging dataflow: sessions, readings and command outcomes -> each site's
allocation -> SetChargingProfile commands (the ``commands`` table and ``ocpp.commands``,
as the API's), the allocation and non-compliant stations (PostgreSQL).

Wiring only; decisions live in :mod:`flows.smart_charging.logic`::

    kafka_events (ocpp.events incl. the gateway's online/offline, meter.readings,
                  ocpp.command-results) --dead letters-->
                         |  (charge point, [StationEvents])
                         v
              route (SiteDirectory: station/meter -> site; the site's rules first)
                         |  (site, [events])
                         v
              stateful_map(SiteControl: logic.apply)     <- snapshot = the state
                         |  (site, [outputs])
                         v
              PostgresSink(SmartRows) --after commit--> OutboxPublisher -> ocpp.commands

Run it with ``python -m flows.run "flows.smart_charging.dataflow:from_env()"``
(``chargeflow run`` starts it). Settings: :class:`flows.settings.SmartChargingFlowSettings`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import bytewax.operators as op
import psycopg
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.outputs import Sink

from api.command_forms import NotExpressible, set_charging_profile
from api.schemas.command_bodies import SetChargingProfileCreate
from bus.commands import CommandError, decode_result, new_command
from bus.envelope import Kind, decode_envelope, normalized_facts
from bus.measurands import CURRENT, POWER, to_w
from bus.normalized import ChargingNeeds, MeterSample, TransactionEnd, TransactionStart
from bus.times import format_rfc3339, utc_now
from flows import metrics
from flows.config import FLOW_GC_YOUNG_THRESHOLD
from flows.errors import InvalidEvent
from flows.settings import SmartChargingFlowSettings
from flows.sinks.database import postgres_sink
from flows.sinks.kafka import dead_letter_sink
from flows.sinks.outbox import OutboxPublisher
from flows.sinks.output import rows_output
from flows.smart_charging.config import SmartChargingFlowConfig
from flows.smart_charging.directory import SiteDirectory
from flows.smart_charging.logic import (
    AllocationView,
    Connection,
    ControlPolicy,
    Drawn,
    Ended,
    Event,
    Needs,
    NeedsDeclared,
    NonCompliant,
    OtherLoad,
    Outcome,
    Output,
    ProfileRequest,
    RulesChanged,
    SiteControl,
    Started,
    apply,
)
from flows.source import DeadLetter, kafka_events, kafka_source
from runtime.gc import tune_gc
from smart_charging.hysteresis import UpdatePolicy
from smart_charging.inputs import NOMINAL_VOLTAGE_V
from smart_charging.priority import Policy
from store.smart_charging import (
    SMART_CHARGING,
    command_record,
    insert_commands,
    mark_non_compliant,
    publish_pending,
    write_allocations,
)

FLOW_ID = "chargeflow-smart-charging"
log = logging.getLogger(__name__)
_RESULT_PREFIX = b'{"command_id"'  # a CommandResult (msgspec keeps field order)


@dataclass(frozen=True, slots=True)
class StationEvents:
    """What one message says for the flow (``meter_id``: a site meter's reading)."""

    charge_point_id: str
    events: tuple[Event, ...]
    meter_id: str | None = None


def _connector(fact: Any) -> int | None:
    return fact.evse_id if fact.evse_id is not None else fact.connector_id


def _draws(samples: list[MeterSample]) -> list[Drawn]:
    """Per (connector, instant): the highest phase current; without a current, the power
    over three phases at the nominal voltage."""
    currents: dict[tuple[int, datetime], float] = {}
    powers: dict[tuple[int, datetime], float] = {}
    tx: dict[int, str | None] = {}
    for s in samples:
        cid = _connector(s)
        if cid is None or cid == 0 or s.location == "EV":
            continue
        key = (cid, s.timestamp)
        tx[cid] = s.transaction_id or tx.get(cid)
        if s.measurand == CURRENT:
            currents[key] = max(currents.get(key, 0.0), float(s.value))
        elif s.measurand == POWER and s.phase is None:
            watts = to_w(s.value, s.unit, s.unit_multiplier)
            if watts is not None:
                powers[key] = float(watts) / (3 * NOMINAL_VOLTAGE_V)
    found = {**powers, **currents}
    return [
        Drawn(samples[0].charge_point_id, cid, tx.get(cid), at, amps)
        for (cid, at), amps in sorted(found.items())
    ]


_PHASES = {"AC_single_phase": 1, "AC_two_phase": 2, "AC_three_phase": 3}


def _needs_declared(cp: str, fact: ChargingNeeds) -> NeedsDeclared:
    def number(value: Decimal | None) -> float | None:
        return float(value) if value is not None else None

    return NeedsDeclared(
        cp,
        fact.evse_id,
        fact.timestamp,
        Needs(fact.departure, number(fact.energy_wh)),
        number(fact.ev_min_current_a),
        number(fact.ev_max_current_a),
        _PHASES.get(fact.requested_energy_transfer),
    )


def decode_event(data: bytes | None) -> StationEvents | None:
    """A message of one of the three topics as the flow's events; None: nothing for it."""
    if data is not None and data.startswith(_RESULT_PREFIX):
        try:
            result = decode_result(data)
        except CommandError as exc:
            raise InvalidEvent(str(exc)) from exc
        if result.requested_by != SMART_CHARGING:
            return None
        outcome = Outcome(result.charge_point_id, str(result.command_id), str(result.status))
        return StationEvents(result.charge_point_id, (outcome,))
    envelope = decode_envelope(data)
    cp = envelope.charge_point_id
    if envelope.kind == Kind.METER_READING:
        meter, amps = envelope.payload.get("meter_id"), envelope.payload.get("current_a")
        if not isinstance(meter, str) or not isinstance(amps, int | float):
            return None
        return StationEvents(cp, (OtherLoad(meter, envelope.measured_at, float(amps)),), meter)
    if envelope.kind == Kind.STATION_CONNECTION:
        online = envelope.payload.get("state") == "online"
        return StationEvents(cp, (Connection(cp, envelope.measured_at, online),))
    if envelope.kind != Kind.OCPP_CALL:
        return None
    events: list[Event] = []
    samples: list[MeterSample] = []
    for fact in normalized_facts(envelope):
        if isinstance(fact, TransactionStart) and _connector(fact) is not None:
            events.append(
                Started(
                    cp, int(_connector(fact) or 0), fact.transaction_id, fact.id_tag, fact.timestamp
                )
            )
        elif isinstance(fact, TransactionEnd) and _connector(fact) is not None:
            events.append(
                Ended(cp, int(_connector(fact) or 0), fact.transaction_id, fact.timestamp)
            )
        elif isinstance(fact, MeterSample):
            samples.append(fact)
        elif isinstance(fact, ChargingNeeds):
            events.append(_needs_declared(cp, fact))
    events.extend(_draws(samples))
    return StationEvents(cp, tuple(events)) if events else None


class SiteRouter:
    """A station's events of one batch as its site's inputs, the site's rules first."""

    def __init__(self, directory: SiteDirectory) -> None:
        self._directory = directory

    def __call__(self, item: tuple[str, list[StationEvents]]) -> list[tuple[str, list[Event]]]:
        cp, batches = item
        rules = self._directory.rules()
        by_site: dict[str, list[Event]] = {}
        for batch in batches:
            site = (
                self._directory.site_of_meter(batch.meter_id)
                if batch.meter_id is not None
                else self._directory.site_of_station(cp)
            )
            if site is None or site not in rules:
                continue
            events = by_site.setdefault(site, [RulesChanged(rules[site])])
            events.extend(batch.events)
        return list(by_site.items())


class SiteStep:
    """The per-site state step (``op.stateful_map``): the state is a ``SiteControl``."""

    def __init__(self, policy: ControlPolicy) -> None:
        self.policy = policy

    def __call__(
        self, state: SiteControl | None, events: list[Event]
    ) -> tuple[SiteControl, list[Output]]:
        state = state if state is not None else SiteControl()
        out: list[Output] = []
        for event in events:
            out.extend(apply(state, event, self.policy))
        return state, out


def profile_command(request: ProfileRequest, now: datetime, ttl_s: float, timeout_s: float) -> Any:
    """The command of a profile request (payload built as the API builds it)."""
    body = SetChargingProfileCreate.model_validate(
        {
            "connector_id": request.connector_id,
            "profile_id": request.profile_id,
            "stack_level": request.stack_level,
            "purpose": request.purpose,
            "kind": "absolute" if request.start_schedule is not None else "relative",
            "start_schedule": None
            if request.start_schedule is None
            else format_rfc3339(request.start_schedule),
            "transaction_id": request.transaction_id,
            "unit": "A",
            "periods": [
                {"start_period_s": s, "limit": Decimal(f"{limit:.1f}")}
                for s, limit in request.periods
            ],
        }
    )
    action, payload = set_charging_profile(body, request.ocpp_version, None)
    return new_command(
        request.station_id,
        action,
        payload,
        requested_by=SMART_CHARGING,
        ocpp_version=request.ocpp_version,
        command_id=uuid.UUID(request.command_id),
        ttl_s=ttl_s,
        timeout_s=timeout_s,
        now=now,
    )


def allocation_body(view: AllocationView) -> dict[str, Any]:
    """The allocation as ``GET /v1/sites/{id}/allocation`` shows it."""
    a = view.allocation
    return {
        "site_id": view.site_id,
        "at": a.at.isoformat(),
        "limit_a": list(a.limit_a),
        "base_load_a": list(a.base_load_a),
        "fixed_load_a": list(a.fixed_load_a),
        "allocated_a": list(a.allocated_a),
        "headroom_a": list(a.headroom_a),
        "sessions": [
            {
                "station_id": s.station_id,
                "connector_id": s.connector_id,
                "transaction_id": view.transactions.get(s.key),
                "current_a": s.current_a,
                "site_phases": [p + 1 for p in s.site_phases],
                "reason": str(s.reason),
                "controlled": s.controlled,
            }
            for s in a.sessions
        ],
        "non_compliant": {cp: at.isoformat() for cp, at in sorted(view.non_compliant.items())},
        "budgeted": list(view.budgeted),
    }


class SmartRows:
    """A batch's commands (pending, unpublished), allocations and markings, in one
    transaction."""

    def __init__(self, ttl_s: float, timeout_s: float, clock: Callable[[], datetime] = utc_now):
        self.ttl_s, self.timeout_s, self.clock = ttl_s, timeout_s, clock

    def write(self, conn: psycopg.Connection[Any], rows: list[Output]) -> None:
        now = self.clock()
        commands = []
        for r in rows:
            if not isinstance(r, ProfileRequest):
                continue
            try:
                commands.append(profile_command(r, now, self.ttl_s, self.timeout_s))
            except NotExpressible as exc:
                # The registry's version of the station disagrees with its messages (a
                # 2.0.1 transaction id on a station registered 1.6 before it booted):
                # that one profile is skipped, the batch and the flow go on.
                log.warning("profile for %s not sent: %s", r.station_id, exc)
        latest: dict[str, AllocationView] = {}
        for r in rows:
            if isinstance(r, AllocationView):
                latest[r.site_id] = r
        marks = [
            (m.station_id, m.connector_id, m.at, m.limit_a, m.measured_a)
            for m in rows
            if isinstance(m, NonCompliant)
        ]
        insert_commands(conn, commands)
        write_allocations(
            conn, [(v.site_id, v.allocation.at, allocation_body(v)) for v in latest.values()]
        )
        mark_non_compliant(conn, marks)


def build_flow_with(
    source: Source[Any],
    rows_sink: Sink[Any],
    deadletter_sink: Sink[DeadLetter],
    directory: SiteDirectory,
    policy: ControlPolicy,
    flow_id: str = FLOW_ID,
) -> Dataflow:
    """The whole flow with its edges swapped in (production and tests share this)."""
    flow = Dataflow(flow_id)
    events = kafka_events("input", flow, source, decode_event, deadletter_sink)
    routed = op.flat_map("route", events, SiteRouter(directory))
    outputs = op.stateful_map("control", routed, SiteStep(policy))
    rows = op.filter("any", outputs, lambda kv: bool(kv[1]))
    rows_output("postgres", rows, rows_sink)
    return flow


def control_policy(config: SmartChargingFlowConfig) -> ControlPolicy:
    return ControlPolicy(
        reaction_window=timedelta(seconds=config.reaction_window_s),
        tolerance_a=config.tolerance_a,
        lease=timedelta(seconds=config.lease_s),
        lead=timedelta(seconds=config.lead_s),
        retry=timedelta(seconds=config.retry_s),
        update=UpdatePolicy(
            threshold_a=config.threshold_a,
            min_interval=timedelta(seconds=config.min_update_interval_s),
        ),
        allocation=Policy(rotation_period=timedelta(seconds=config.rotation_period_s)),
    )


def build_flow(config: SmartChargingFlowConfig) -> Dataflow:
    """The production flow: Kafka in; PostgreSQL (+ ocpp.commands) and dead letters out."""
    topics = config.topics

    def publisher() -> OutboxPublisher[Any]:
        return OutboxPublisher(
            config.brokers,
            topics.ocpp_commands,
            config.kafka_config,
            pending=publish_pending,
            record=command_record,
        )

    sink = postgres_sink(
        config, SmartRows(config.command_ttl_s, config.command_timeout_s), FLOW_ID, publisher
    )
    return build_flow_with(
        kafka_source(
            config,
            FLOW_ID,
            [topics.ocpp_events, topics.meter_readings, topics.ocpp_command_results],
        ),
        sink,
        dead_letter_sink(config, FLOW_ID),
        SiteDirectory.from_database(config.database_url, config.rules_refresh_s),
        control_policy(config),
    )


def from_env() -> Dataflow:
    """Entry point for ``python -m flows.run "flows.smart_charging.dataflow:from_env()"``."""
    config = SmartChargingFlowSettings.load().flow_config()
    flow = build_flow(config)
    metrics.serve(FLOW_ID, config, [config.topics.ocpp_events])
    tune_gc(FLOW_GC_YOUNG_THRESHOLD)
    return flow
