"""Signed meter values (Eichrecht), pure parts: normalised from OCPP 1.6 SignedData and
2.0.1 signedMeterValue next to the numeric samples, written by the sessions flow for
their transaction, mapped to the CDR's OCPI 2.2.1 ``signed_data``, and sent by the
simulator's signing meters."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ocpp.charge_point import remove_nones, serialize_as_dict, snake_to_camel_case

from billing.signed_data import SignedValue, ocpi_signed_data
from bus.envelope import decode_envelope, encode_envelope
from bus.normalized import (
    MeterSample,
    SignedMeterValue,
    TransactionEnd,
    TransactionStart,
    normalize_v16,
    normalize_v201,
)
from flows.sessions.logic import ChargePointState, Output, SignedValueRow, update
from ingest.gateway.schemas import SchemaSet
from ingest.simulator.v16 import V16Dialect
from ingest.simulator.v201 import V201Dialect
from tests.support.sessions import T0, envelope, iso, start, stop, v201

T = datetime(2026, 1, 5, 10, tzinfo=UTC)
OCMF_BEGIN = (
    'OCMF|{"FV":"1.0","GS":"M1","PG":"T1","RD":[{"TM":"2026-01-05T10:00:00,000+0000 S",'
    '"TX":"B","RV":1000.0,"RU":"kWh"}]}|{"SA":"ECDSA-secp256r1-SHA256","SD":"3045AB"}'
)
OCMF_END = OCMF_BEGIN.replace('"TX":"B"', '"TX":"E"').replace("T1", "T2")
REGISTER = "Energy.Active.Import.Register"


def signed_16(value: str, context: str) -> dict[str, Any]:
    return {"value": value, "format": "SignedData", "context": context, "measurand": REGISTER}


def plain_16(wh: int, context: str) -> dict[str, Any]:
    return {"value": str(wh), "context": context, "measurand": REGISTER, "unit": "Wh"}


def signed_201(kwh: float, context: str, data: str = "T0NNRnx7fXx7fQ==") -> dict[str, Any]:
    return {
        "value": kwh,
        "context": context,
        "unitOfMeasure": {"unit": "kWh"},
        "signedMeterValue": {
            "signedMeterData": data,
            "signingMethod": "ECDSA-secp256r1-SHA256",
            "encodingMethod": "OCMF",
            "publicKey": "UEs=",
        },
    }


# --------------------------------------------------------------------------- normalisation


def test_v16_signed_data_is_its_own_fact_and_numeric_samples_are_untouched() -> None:
    facts = normalize_v16(
        "CP",
        "MeterValues",
        {
            "connectorId": 1,
            "transactionId": 5,
            "meterValue": [
                {
                    "timestamp": "2026-01-05T10:00:00Z",
                    "sampledValue": [
                        plain_16(1_000_000, "Transaction.Begin"),
                        signed_16(OCMF_BEGIN, "Transaction.Begin"),
                        {"value": "7400", "measurand": "Power.Active.Import", "unit": "W"},
                    ],
                }
            ],
        },
        {},
        T,
    )
    samples = [f for f in facts if isinstance(f, MeterSample)]
    assert [(s.measurand, s.value) for s in samples] == [
        (REGISTER, Decimal(1_000_000)),
        ("Power.Active.Import", Decimal(7400)),
    ]
    [signed] = [f for f in facts if isinstance(f, SignedMeterValue)]
    assert signed == SignedMeterValue(
        charge_point_id="CP",
        evse_id=1,
        connector_id=1,
        transaction_id="5",
        timestamp=T,
        measurand=REGISTER,
        context="Transaction.Begin",
        signed_data=OCMF_BEGIN,  # exactly as sent
        encoding_method="OCMF",
        value=Decimal(1_000_000),  # the plain register sent next to it
        unit="Wh",
    )


def test_v16_signed_data_alone_has_no_plain_register_and_another_encoding_none() -> None:
    [signed] = normalize_v16(
        "CP",
        "MeterValues",
        {
            "connectorId": 2,
            "meterValue": [
                {
                    "timestamp": "2026-01-05T10:00:00Z",
                    "sampledValue": [signed_16("A1B2C3", "Sample.Periodic")],
                }
            ],
        },
        {},
        T,
    )
    assert isinstance(signed, SignedMeterValue)
    assert (signed.transaction_id, signed.encoding_method, signed.value) == (None, None, None)


def test_v16_stop_transaction_data_carries_the_signed_start_and_end() -> None:
    facts = normalize_v16(
        "CP",
        "StopTransaction",
        {
            "transactionId": 7,
            "meterStop": 1_007_000,
            "timestamp": "2026-01-05T11:00:00Z",
            "transactionData": [
                {
                    "timestamp": "2026-01-05T10:00:00Z",
                    "sampledValue": [signed_16(OCMF_BEGIN, "Transaction.Begin")],
                },
                {
                    "timestamp": "2026-01-05T11:00:00Z",
                    "sampledValue": [
                        plain_16(1_007_000, "Transaction.End"),
                        signed_16(OCMF_END, "Transaction.End"),
                    ],
                },
            ],
        },
        {},
        T,
    )
    assert isinstance(facts[0], TransactionEnd)
    assert facts[0].meter_stop_wh == 1_007_000
    signed = [f for f in facts if isinstance(f, SignedMeterValue)]
    assert [(s.context, s.transaction_id, s.value) for s in signed] == [
        ("Transaction.Begin", "7", None),
        ("Transaction.End", "7", Decimal(1_007_000)),
    ]


def test_v201_signed_meter_value_keeps_the_sample_and_travels_in_the_envelope() -> None:
    payload = {
        "eventType": "Ended",
        "timestamp": "2026-01-05T11:00:00Z",
        "triggerReason": "EVDeparted",
        "seqNo": 3,
        "transactionInfo": {"transactionId": "tx-1"},
        "meterValue": [
            {
                "timestamp": "2026-01-05T11:00:00Z",
                "sampledValue": [signed_201(1007.5, "Transaction.End")],
            }
        ],
    }
    env = v201("CP2", "TransactionEvent", payload, at=T)
    assert env.normalized is not None
    end, sample, signed = decode_envelope(encode_envelope(env)).normalized or []
    assert isinstance(end, TransactionEnd)
    assert end.meter_stop_wh == Decimal("1007500.0")  # the register, signed or not
    assert isinstance(sample, MeterSample)
    assert sample.value == Decimal("1007.5")
    assert signed == SignedMeterValue(
        charge_point_id="CP2",
        evse_id=None,
        connector_id=None,
        transaction_id="tx-1",
        timestamp=datetime(2026, 1, 5, 11, tzinfo=UTC),
        measurand=REGISTER,
        context="Transaction.End",
        signed_data="T0NNRnx7fXx7fQ==",
        encoding_method="OCMF",
        signing_method="ECDSA-secp256r1-SHA256",
        public_key="UEs=",
        value=Decimal("1007.5"),
        unit="kWh",
    )


def test_v201_signed_meter_value_without_data_is_left_out() -> None:
    value = signed_201(1.5, "Sample.Periodic", data="")
    facts = normalize_v201(
        "CP2",
        "MeterValues",
        {
            "evseId": 1,
            "meterValue": [{"timestamp": "2026-01-05T11:00:00Z", "sampledValue": [value]}],
        },
        {},
        T,
    )
    assert [type(f) for f in facts] == [MeterSample]


# --------------------------------------------------------------------------- sessions flow


def run(envelopes: list[Any]) -> tuple[ChargePointState | None, list[Output]]:
    state: ChargePointState | None = None
    out: list[Output] = []
    for env in envelopes:
        state, rows = update(state, env)
        out.extend(rows)
    return state, out


def signed_rows(out: list[Output]) -> list[SignedValueRow]:
    return [o for o in out if isinstance(o, SignedValueRow)]


def signed_meter(tx: int | None, context: str, data: str, at: datetime) -> Any:
    payload: dict[str, Any] = {
        "connectorId": 1,
        "meterValue": [{"timestamp": iso(at), "sampledValue": [signed_16(data, context)]}],
    }
    if tx is not None:
        payload["transactionId"] = tx
    return envelope("CP1", "MeterValues", payload, at=at)


def test_the_flow_writes_signed_values_for_their_transaction_and_numbers_still_count() -> None:
    t_end = T0 + timedelta(hours=1)
    _, out = run(
        [
            start("CP1", 42, 1_000_000),
            signed_meter(42, "Transaction.Begin", OCMF_BEGIN, T0),
            envelope(
                "CP1",
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": 42,
                    "meterValue": [
                        {
                            "timestamp": iso(T0 + timedelta(minutes=30)),
                            "sampledValue": [
                                plain_16(1_003_000, "Sample.Periodic"),
                                signed_16(OCMF_BEGIN.replace("T1", "T9"), "Sample.Periodic"),
                            ],
                        }
                    ],
                },
                at=T0 + timedelta(minutes=30),
            ),
            stop(
                "CP1",
                42,
                1_007_000,
                transaction_data=[
                    {
                        "timestamp": iso(t_end),
                        "sampledValue": [
                            plain_16(1_007_000, "Transaction.End"),
                            signed_16(OCMF_END, "Transaction.End"),
                        ],
                    }
                ],
            ),
        ]
    )
    rows = signed_rows(out)
    assert [(r.transaction_id, r.connector_id, r.context) for r in rows] == [
        ("42", 1, "Transaction.Begin"),
        ("42", 1, "Sample.Periodic"),
        ("42", 1, "Transaction.End"),  # stop data has no connector: the transaction's
    ]
    assert rows[-1].signed_data == OCMF_END
    assert rows[-1].value == 1_007_000
    closed = [o for o in out if getattr(o, "status", None) == "closed"]
    assert closed[-1].energy_wh == 7000  # type: ignore[union-attr]
    assert closed[-1].sample_count == 2  # type: ignore[union-attr]  # signed: no samples


def test_signed_values_without_a_transaction_go_to_the_running_one_or_nowhere() -> None:
    _, out = run([signed_meter(None, "Sample.Periodic", "X1", T0)])
    assert signed_rows(out) == []  # nothing runs on the connector
    _, out = run([start("CP1", 8, 5), signed_meter(None, "Sample.Periodic", "X2", T0)])
    assert [(r.transaction_id, r.signed_data) for r in signed_rows(out)] == [("8", "X2")]


# --------------------------------------------------------------------------- OCPI mapping


def value(context: str, minutes: int, data: str = "OCMF|{}|{}", **kw: Any) -> SignedValue:
    return SignedValue(T + timedelta(minutes=minutes), context, data, **kw)


def test_ocpi_signed_data_orders_start_intermediate_end_with_natures() -> None:
    data = ocpi_signed_data(
        [
            value("Transaction.End", 60, "E", encoding_method="OCMF", plain_value=Decimal(2)),
            value("Sample.Periodic", 30, "I2"),
            value("Sample.Clock", 10, "I1"),
            value("Transaction.Begin", 0, OCMF_BEGIN, encoding_method="OCMF", public_key="PK"),
        ]
    )
    assert data is not None
    assert data["encoding_method"] == "OCMF"
    assert data["public_key"] == "PK"
    assert [(v["nature"], v["signed_data"]) for v in data["signed_values"]] == [
        ("Start", OCMF_BEGIN),
        ("Intermediate", "I1"),
        ("Intermediate", "I2"),
        ("End", "E"),
    ]
    # Without a plain register: the OCMF payload section.
    assert data["signed_values"][0]["plain_data"] == OCMF_BEGIN.split("|")[1]
    assert data["signed_values"][3]["plain_data"] == "2"  # a register without unit


def test_ocpi_signed_data_has_one_encoding_and_unknown_when_none_is_named() -> None:
    mixed = ocpi_signed_data(
        [
            value("Transaction.Begin", 0, "A", encoding_method="OCMF"),
            value("Transaction.End", 60, "B", encoding_method="Alfen Eichrecht"),
        ]
    )
    assert mixed is not None
    assert [v["signed_data"] for v in mixed["signed_values"]] == ["A"]
    unnamed = ocpi_signed_data([value("Transaction.End", 0, "HEX")])
    assert unnamed == {
        "encoding_method": "UNKNOWN",
        "signed_values": [{"nature": "End", "plain_data": "HEX", "signed_data": "HEX"}],
    }


# --------------------------------------------------------------------------- simulator


def wire(payload: Any) -> dict[str, Any]:
    return dict(snake_to_camel_case(remove_nones(serialize_as_dict(payload))))


def test_a_signing_16_station_sends_the_signed_start_and_end_at_stop() -> None:
    d = V16Dialect(signing_meter="M-1")
    started = wire(d.start(connector_id=1, id_tag="T", register_wh=1000, at=T, transaction_id=None))
    stopped = wire(
        d.stop(
            connector_id=1,
            transaction_id=4,
            id_tag="T",
            register_wh=3500,
            at=T + timedelta(hours=1),
            reason="Local",
            last=None,
        )
    )
    schemas = SchemaSet("1.6")
    assert schemas.validate("StartTransaction", started) is None
    assert schemas.validate("StopTransaction", stopped) is None
    signed = [
        f
        for f in normalize_v16("CP", "StopTransaction", stopped, {}, T)
        if isinstance(f, SignedMeterValue)
    ]
    assert [(s.context, s.value, s.encoding_method) for s in signed] == [
        ("Transaction.Begin", 1000, "OCMF"),
        ("Transaction.End", 3500, "OCMF"),
    ]
    assert '"TX":"B"' in signed[0].signed_data
    assert '"RV":3.5' in signed[1].signed_data
    assert (
        V16Dialect()
        .stop(  # an ordinary meter signs nothing
            connector_id=1,
            transaction_id=4,
            id_tag="T",
            register_wh=2,
            at=T,
            reason="Local",
            last=None,
        )
        .transaction_data
        is None
    )


def test_a_signing_201_station_signs_the_started_and_ended_registers() -> None:
    d = V201Dialect(signing_meter="M-2")
    tx = "6c1f0e0c-3a39-4d2e-9d55-0d1c3e0b6b1a"
    events = [
        wire(d.start(connector_id=1, id_tag="T", register_wh=1000, at=T, transaction_id=tx)),
        wire(
            d.stop(
                connector_id=1,
                transaction_id=tx,
                id_tag="T",
                register_wh=2500,
                at=T + timedelta(hours=1),
                reason="Local",
                last=None,
            )
        ),
    ]
    schemas = SchemaSet("2.0.1")
    facts = []
    for e in events:
        assert schemas.validate("TransactionEvent", e) is None
        facts.extend(normalize_v201("CP", "TransactionEvent", e, {}, T))
    assert isinstance(facts[0], TransactionStart)
    assert facts[0].meter_start_wh == 1000
    signed = [f for f in facts if isinstance(f, SignedMeterValue)]
    assert [(s.context, s.value, s.public_key is not None) for s in signed] == [
        ("Transaction.Begin", 1000, True),
        ("Transaction.End", 2500, True),
    ]
    assert base64.b64decode(signed[1].signed_data).decode().startswith("OCMF|")
