"""The version-independent form of what a charge point reported (OCPP 1.6J or 2.0.1).

The gateway publishes every CALL with its raw payload (camelCase, exactly as
received) *and* a list of normalised facts on ``Envelope.normalized``, so that
consumers can be written once for both OCPP versions. Everything here is pure:
no I/O, no clock.

Facts (tagged structs, the tag is the ``type`` field in JSON):

* :class:`ConnectorStatus`  (``connector_status``)  - from StatusNotification
* :class:`MeterSample`      (``meter_sample``)      - one per sampled value
* :class:`TransactionStart` (``transaction_start``) - 1.6 StartTransaction, 2.0.1 Started
* :class:`TransactionUpdate` (``transaction_update``) - 2.0.1 Updated
* :class:`TransactionEnd`   (``transaction_end``)   - 1.6 StopTransaction, 2.0.1 Ended

Mapping rules
-------------

Identifiers
  ``transaction_id`` is always a string (1.6: the integer the gateway assigned,
  ``str(transactionId)``; 2.0.1: ``transactionInfo.transactionId``).
  ``evse_id``/``connector_id``: a 1.6 connector is an EVSE with one connector, so
  for 1.6 both are the ``connectorId`` (0 = the whole station). For 2.0.1 they
  are ``evseId``/``connectorId`` (TransactionEvent: ``evse.id``/``evse.connectorId``;
  MeterValues only has ``evseId``, ``connector_id`` is then None). Group by
  ``(charge_point_id, evse_id)`` to treat both versions alike.
  ``id_tag``: 1.6 ``idTag``; 2.0.1 ``idToken.idToken`` (its type in ``id_token_type``).

Connector status (common set: Available, Preparing, Charging, SuspendedEV,
SuspendedEVSE, Finishing, Reserved, Unavailable, Faulted; the value as sent is
kept in ``ocpp_status``)
  1.6 statuses are the common set and pass unchanged; ``error_code`` is the 1.6
  ``errorCode``. 2.0.1 Available/Reserved/Unavailable/Faulted pass unchanged;
  2.0.1 has no error code in StatusNotification (faults come as NotifyEvent), so
  ``error_code`` is None. 2.0.1 ``Occupied`` is refined with what the same
  connection last saw of a transaction on that EVSE (:class:`EvseStates`):
  chargingState Charging/SuspendedEV/SuspendedEVSE -> the same; EVConnected/Idle
  or no transaction seen -> Preparing; a transaction that ended -> Finishing.
  This is a best effort (state is per connection, lost on reconnect): the raw
  ``Occupied`` stays in ``ocpp_status``.

Meter samples
  1.6: ``value`` is a decimal string; values that are not finite numbers and
  ``format: SignedData`` samples are left out (they stay in the raw payload).
  2.0.1: ``value`` is a JSON number, kept exactly as written (``Decimal(str(v))``).
  Spec defaults are filled in: measurand ``Energy.Active.Import.Register``,
  context ``Sample.Periodic``, location ``Outlet``; unit ``Wh`` for ``Energy.*``
  measurands, otherwise ``""`` when not given; 2.0.1 ``unitOfMeasure.multiplier``
  (power of ten) goes to ``unit_multiplier`` (1.6: always 0). ``value`` is never
  scaled; use :func:`to_wh` for an energy register in Wh.
  1.6 StopTransaction ``transactionData`` and the 2.0.1 TransactionEvent
  ``meterValue`` become samples with the transaction id; 1.6 MeterValues carries
  its optional ``transactionId``; 2.0.1 MeterValues is outside a transaction.

Transactions
  ``meter_start_wh``/``meter_stop_wh`` (Decimal Wh): 1.6 ``meterStart``/``meterStop``;
  2.0.1: the ``Energy.Active.Import.Register`` sample without phase in context
  ``Transaction.Begin`` (Started) / ``Transaction.End`` (Ended), converted with
  :func:`to_wh` (Wh or kWh, times 10^multiplier); None when not there.
  ``seq_no``, ``offline``, ``trigger_reason``, ``charging_state``: 2.0.1 only
  (1.6: None/False/None/None). ``stopped_reason``: 1.6 ``reason``, 2.0.1
  ``transactionInfo.stoppedReason``; absent means ``Local`` in both versions.
  ``auth_status``: what the gateway answered for the id tag (1.6
  StartTransaction/StopTransaction ``idTagInfo``, 2.0.1 ``idTokenInfo``), if any.
  A 2.0.1 Updated/Ended event that carries an idToken is still an update/end.

Times are tz-aware: the payload's timestamp, or ``received_at`` when the message
has none (1.6 StatusNotification without timestamp).

>>> from datetime import UTC, datetime
>>> t = datetime(2026, 1, 5, 10, tzinfo=UTC)
>>> facts = normalize_v16("CP1", "StatusNotification",
...     {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}, {}, t)
>>> facts[0].status, facts[0].evse_id, facts[0].timestamp == t
('Charging', 1, True)
>>> status_from_v201("Occupied", "SuspendedEV"), status_from_v201("Occupied", None)
('SuspendedEV', 'Preparing')
>>> to_wh(Decimal("12.5"), "kWh", 0), to_wh(Decimal("125"), "Wh", 2), to_wh(Decimal(1), "W", 0)
(Decimal('12500.0'), Decimal('12500'), None)
>>> decode_facts(encode_facts(facts)) == facts
True
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

ENERGY_REGISTER = "Energy.Active.Import.Register"
COMMON_STATUSES = frozenset(
    {
        "Available",
        "Preparing",
        "Charging",
        "SuspendedEV",
        "SuspendedEVSE",
        "Finishing",
        "Reserved",
        "Unavailable",
        "Faulted",
    }
)
ENDED = "Ended"  # EvseStates value after a transaction ended on an EVSE


class _Fact(msgspec.Struct, kw_only=True, frozen=True, tag_field="type"):
    charge_point_id: str


class ConnectorStatus(_Fact, tag="connector_status", kw_only=True, frozen=True):
    evse_id: int
    connector_id: int
    status: str  # one of COMMON_STATUSES
    ocpp_status: str  # as the station sent it (2.0.1: e.g. Occupied)
    error_code: str | None = None  # 1.6 errorCode; None for 2.0.1
    timestamp: datetime


class MeterSample(_Fact, tag="meter_sample", kw_only=True, frozen=True):
    evse_id: int | None
    connector_id: int | None
    transaction_id: str | None = None
    timestamp: datetime
    measurand: str
    phase: str | None = None
    unit: str
    unit_multiplier: int = 0  # value is in unit * 10^unit_multiplier
    context: str
    location: str
    value: Decimal  # as written by the station, JSON string on the wire


class TransactionStart(_Fact, tag="transaction_start", kw_only=True, frozen=True):
    transaction_id: str
    evse_id: int | None
    connector_id: int | None
    id_tag: str | None = None
    id_token_type: str | None = None
    auth_status: str | None = None
    meter_start_wh: Decimal | None = None
    timestamp: datetime
    seq_no: int | None = None
    offline: bool = False
    trigger_reason: str | None = None
    charging_state: str | None = None
    reservation_id: int | None = None


class TransactionUpdate(_Fact, tag="transaction_update", kw_only=True, frozen=True):
    transaction_id: str
    evse_id: int | None
    connector_id: int | None
    id_tag: str | None = None
    id_token_type: str | None = None
    auth_status: str | None = None
    timestamp: datetime
    seq_no: int | None = None
    offline: bool = False
    trigger_reason: str | None = None
    charging_state: str | None = None


class TransactionEnd(_Fact, tag="transaction_end", kw_only=True, frozen=True):
    transaction_id: str
    evse_id: int | None
    connector_id: int | None
    id_tag: str | None = None
    id_token_type: str | None = None
    auth_status: str | None = None
    meter_stop_wh: Decimal | None = None
    timestamp: datetime
    seq_no: int | None = None
    offline: bool = False
    trigger_reason: str | None = None
    charging_state: str | None = None
    stopped_reason: str = "Local"


Normalized = ConnectorStatus | MeterSample | TransactionStart | TransactionUpdate | TransactionEnd

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[Normalized])


def encode_facts(facts: list[Normalized]) -> bytes:
    return _encoder.encode(facts)


def decode_facts(data: bytes) -> list[Normalized]:
    return _decoder.decode(data)


# --------------------------------------------------------------------------- helpers

_RFC3339 = re.compile(r"^(.*T\d{2}:\d{2}:\d{2})(\.\d+)?(.*)$")


def parse_time(value: Any, default: datetime) -> datetime:
    """An RFC 3339 timestamp as an aware datetime; ``default`` when it is not one."""
    if not isinstance(value, str):
        return default
    text = value.strip().upper().replace("Z", "+00:00")
    match = _RFC3339.match(text)
    if match and match.group(2) and len(match.group(2)) > 7:
        text = match.group(1) + match.group(2)[:7] + match.group(3)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return default
    return parsed if parsed.tzinfo is not None else default


def to_decimal(value: Any) -> Decimal | None:
    """A finite Decimal from a JSON string or number, else None.

    >>> to_decimal("1000.50"), to_decimal(12), to_decimal(0.1), to_decimal("x"), to_decimal(True)
    (Decimal('1000.50'), Decimal('12'), Decimal('0.1'), None, None)
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def to_wh(value: Decimal, unit: str, multiplier: int) -> Decimal | None:
    """An energy reading in Wh (``unit`` Wh or kWh, times 10^multiplier); None otherwise."""
    factor = {"wh": Decimal(1), "kwh": Decimal(1000)}.get(unit.strip().lower())
    if factor is None:
        return None
    return value * factor * Decimal(10) ** multiplier


def status_from_v16(status: str) -> str:
    """1.6 statuses already are the common set."""
    return status if status in COMMON_STATUSES else "Unavailable"


def status_from_v201(connector_status: str, evse_state: str | None) -> str:
    """The common status of a 2.0.1 ``connectorStatus``, refining ``Occupied`` with the
    EVSE's last known transaction state (a chargingState, :data:`ENDED` or None)."""
    if connector_status != "Occupied":
        return connector_status if connector_status in COMMON_STATUSES else "Unavailable"
    if evse_state in ("Charging", "SuspendedEV", "SuspendedEVSE"):
        return evse_state
    if evse_state == ENDED:
        return "Finishing"
    return "Preparing"


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _samples(
    cp: str,
    meter_values: Any,
    *,
    evse_id: int | None,
    connector_id: int | None,
    transaction_id: str | None,
    received_at: datetime,
    v201: bool,
) -> list[MeterSample]:
    out: list[MeterSample] = []
    if not isinstance(meter_values, list):
        return out
    for entry in meter_values:
        if not isinstance(entry, dict):
            continue
        stamp = parse_time(entry.get("timestamp"), received_at)
        for sv in entry.get("sampledValue") or ():
            if not isinstance(sv, dict) or (not v201 and sv.get("format") == "SignedData"):
                continue
            value = to_decimal(sv.get("value"))
            if value is None:
                continue
            measurand = _str_or_none(sv.get("measurand")) or ENERGY_REGISTER
            if v201:
                uom = _obj(sv.get("unitOfMeasure"))
                unit = _str_or_none(uom.get("unit"))
                multiplier = _int_or_none(uom.get("multiplier")) or 0
            else:
                unit = _str_or_none(sv.get("unit"))
                multiplier = 0
            if unit is None:
                unit = "Wh" if measurand.startswith("Energy.") else ""
            out.append(
                MeterSample(
                    charge_point_id=cp,
                    evse_id=evse_id,
                    connector_id=connector_id,
                    transaction_id=transaction_id,
                    timestamp=stamp,
                    measurand=measurand,
                    phase=_str_or_none(sv.get("phase")),
                    unit=unit,
                    unit_multiplier=multiplier,
                    context=_str_or_none(sv.get("context")) or "Sample.Periodic",
                    location=_str_or_none(sv.get("location")) or "Outlet",
                    value=value,
                )
            )
    return out


def register_wh(samples: Iterable[MeterSample], context: str, *, last: bool) -> Decimal | None:
    """The Energy.Active.Import.Register (no phase) in ``context``, in Wh: the
    earliest such sample, or the latest with ``last=True``; None when there is none."""
    found = [
        s
        for s in samples
        if s.measurand == ENERGY_REGISTER
        and s.phase is None
        and s.context == context
        and to_wh(s.value, s.unit, s.unit_multiplier) is not None
    ]
    if not found:
        return None
    found.sort(key=lambda s: s.timestamp)
    pick = found[-1] if last else found[0]
    return to_wh(pick.value, pick.unit, pick.unit_multiplier)


def _auth_status(response: Mapping[str, Any] | None, key: str) -> str | None:
    info = (response or {}).get(key)
    return _str_or_none(info.get("status")) if isinstance(info, dict) else None


# --------------------------------------------------------------------------- OCPP 1.6


def normalize_v16(
    charge_point_id: str,
    action: str,
    payload: Mapping[str, Any],
    response: Mapping[str, Any] | None,
    received_at: datetime,
) -> list[Normalized]:
    """The facts in one (schema-valid) OCPP 1.6 CALL and the gateway's answer.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 5, tzinfo=UTC)
    >>> start = normalize_v16("CP1", "StartTransaction", {"connectorId": 2, "idTag": "T",
    ...     "meterStart": 1000, "timestamp": "2026-01-05T10:00:00Z"},
    ...     {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}, t)[0]
    >>> start.transaction_id, start.evse_id, start.meter_start_wh, start.auth_status
    ('7', 2, Decimal('1000'), 'Accepted')
    >>> normalize_v16("CP1", "Heartbeat", {}, {}, t)
    []
    """
    cp = charge_point_id
    p = payload
    facts: list[Normalized] = []
    if action == "StatusNotification":
        cid = _int_or_none(p.get("connectorId"))
        status = _str_or_none(p.get("status"))
        if cid is None or status is None:
            return facts
        facts.append(
            ConnectorStatus(
                charge_point_id=cp,
                evse_id=cid,
                connector_id=cid,
                status=status_from_v16(status),
                ocpp_status=status,
                error_code=_str_or_none(p.get("errorCode")),
                timestamp=parse_time(p.get("timestamp"), received_at),
            )
        )
    elif action == "MeterValues":
        cid = _int_or_none(p.get("connectorId"))
        tx = _int_or_none(p.get("transactionId"))
        facts.extend(
            _samples(
                cp,
                p.get("meterValue"),
                evse_id=cid,
                connector_id=cid,
                transaction_id=None if tx is None else str(tx),
                received_at=received_at,
                v201=False,
            )
        )
    elif action == "StartTransaction":
        tx = _int_or_none((response or {}).get("transactionId"))
        cid = _int_or_none(p.get("connectorId"))
        if tx is None:
            return facts
        meter_start = _int_or_none(p.get("meterStart"))
        facts.append(
            TransactionStart(
                charge_point_id=cp,
                transaction_id=str(tx),
                evse_id=cid,
                connector_id=cid,
                id_tag=_str_or_none(p.get("idTag")),
                auth_status=_auth_status(response, "idTagInfo"),
                meter_start_wh=None if meter_start is None else Decimal(meter_start),
                timestamp=parse_time(p.get("timestamp"), received_at),
                reservation_id=_int_or_none(p.get("reservationId")),
            )
        )
    elif action == "StopTransaction":
        tx = _int_or_none(p.get("transactionId"))
        if tx is None:
            return facts
        meter_stop = _int_or_none(p.get("meterStop"))
        facts.append(
            TransactionEnd(
                charge_point_id=cp,
                transaction_id=str(tx),
                evse_id=None,
                connector_id=None,
                id_tag=_str_or_none(p.get("idTag")),
                auth_status=_auth_status(response, "idTagInfo"),
                meter_stop_wh=None if meter_stop is None else Decimal(meter_stop),
                timestamp=parse_time(p.get("timestamp"), received_at),
                stopped_reason=_str_or_none(p.get("reason")) or "Local",
            )
        )
        facts.extend(
            _samples(
                cp,
                p.get("transactionData"),
                evse_id=None,
                connector_id=None,
                transaction_id=str(tx),
                received_at=received_at,
                v201=False,
            )
        )
    return facts


# --------------------------------------------------------------------------- OCPP 2.0.1


class EvseStates:
    """What one connection last saw of transactions per EVSE (for ``Occupied``).

    >>> from datetime import UTC, datetime
    >>> s = EvseStates()
    >>> s.apply([TransactionUpdate(charge_point_id="CP", transaction_id="t", evse_id=1,
    ...     connector_id=1, timestamp=datetime(2026, 1, 5, tzinfo=UTC),
    ...     charging_state="SuspendedEV")])
    >>> s.get(1), s.get(2)
    ('SuspendedEV', None)
    """

    def __init__(self) -> None:
        self._by_evse: dict[int, str] = {}
        self._evse_of_tx: dict[str, int] = {}

    def get(self, evse_id: int) -> str | None:
        return self._by_evse.get(evse_id)

    def apply(self, facts: Iterable[Normalized]) -> None:
        for fact in facts:
            if isinstance(fact, TransactionStart | TransactionUpdate | TransactionEnd):
                evse = fact.evse_id
                if evse is None:
                    evse = self._evse_of_tx.get(fact.transaction_id)
                if evse is None:
                    continue
                self._evse_of_tx[fact.transaction_id] = evse
                if isinstance(fact, TransactionEnd):
                    self._by_evse[evse] = ENDED
                    self._evse_of_tx.pop(fact.transaction_id, None)
                else:
                    self._by_evse[evse] = fact.charging_state or self._by_evse.get(
                        evse, "EVConnected"
                    )
            elif isinstance(fact, ConnectorStatus) and fact.ocpp_status == "Available":
                self._by_evse.pop(fact.evse_id, None)


def normalize_v201(
    charge_point_id: str,
    action: str,
    payload: Mapping[str, Any],
    response: Mapping[str, Any] | None,
    received_at: datetime,
    evse_states: EvseStates | None = None,
) -> list[Normalized]:
    """The facts in one (schema-valid) OCPP 2.0.1 CALL and the gateway's answer.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 5, tzinfo=UTC)
    >>> facts = normalize_v201("CP2", "TransactionEvent", {"eventType": "Ended",
    ...     "timestamp": "2026-01-05T11:00:00Z", "triggerReason": "EVDeparted", "seqNo": 4,
    ...     "transactionInfo": {"transactionId": "tx-1", "stoppedReason": "EVDisconnected"},
    ...     "meterValue": [{"timestamp": "2026-01-05T11:00:00Z", "sampledValue": [
    ...         {"value": 12.345, "context": "Transaction.End",
    ...          "unitOfMeasure": {"unit": "kWh"}}]}]}, {}, t)
    >>> end = facts[0]
    >>> end.transaction_id, end.meter_stop_wh, end.seq_no, end.stopped_reason
    ('tx-1', Decimal('12345.000'), 4, 'EVDisconnected')
    >>> facts[1].value, facts[1].unit
    (Decimal('12.345'), 'kWh')
    """
    cp = charge_point_id
    p = payload
    facts: list[Normalized] = []
    if action == "StatusNotification":
        evse = _int_or_none(p.get("evseId"))
        cid = _int_or_none(p.get("connectorId"))
        status = _str_or_none(p.get("connectorStatus"))
        if evse is None or cid is None or status is None:
            return facts
        state = evse_states.get(evse) if evse_states is not None else None
        facts.append(
            ConnectorStatus(
                charge_point_id=cp,
                evse_id=evse,
                connector_id=cid,
                status=status_from_v201(status, state),
                ocpp_status=status,
                error_code=None,
                timestamp=parse_time(p.get("timestamp"), received_at),
            )
        )
    elif action == "MeterValues":
        facts.extend(
            _samples(
                cp,
                p.get("meterValue"),
                evse_id=_int_or_none(p.get("evseId")),
                connector_id=None,
                transaction_id=None,
                received_at=received_at,
                v201=True,
            )
        )
    elif action == "TransactionEvent":
        info = _obj(p.get("transactionInfo"))
        tx = _str_or_none(info.get("transactionId"))
        if tx is None:
            return facts
        evse_obj = _obj(p.get("evse"))
        evse = _int_or_none(evse_obj.get("id"))
        cid = _int_or_none(evse_obj.get("connectorId"))
        token = _obj(p.get("idToken"))
        samples = _samples(
            cp,
            p.get("meterValue"),
            evse_id=evse,
            connector_id=cid,
            transaction_id=tx,
            received_at=received_at,
            v201=True,
        )
        common: dict[str, Any] = dict(
            charge_point_id=cp,
            transaction_id=tx,
            evse_id=evse,
            connector_id=cid,
            id_tag=_str_or_none(token.get("idToken")),
            id_token_type=_str_or_none(token.get("type")),
            auth_status=_auth_status(response, "idTokenInfo"),
            timestamp=parse_time(p.get("timestamp"), received_at),
            seq_no=_int_or_none(p.get("seqNo")),
            offline=p.get("offline") is True,
            trigger_reason=_str_or_none(p.get("triggerReason")),
            charging_state=_str_or_none(info.get("chargingState")),
        )
        event = p.get("eventType")
        if event == "Started":
            facts.append(
                TransactionStart(
                    **common,
                    meter_start_wh=register_wh(samples, "Transaction.Begin", last=False),
                    reservation_id=_int_or_none(p.get("reservationId")),
                )
            )
        elif event == "Ended":
            facts.append(
                TransactionEnd(
                    **common,
                    meter_stop_wh=register_wh(samples, "Transaction.End", last=True),
                    stopped_reason=_str_or_none(info.get("stoppedReason")) or "Local",
                )
            )
        else:
            facts.append(TransactionUpdate(**common))
        facts.extend(samples)
    return facts
