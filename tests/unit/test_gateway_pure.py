"""Pure parts of the gateway and simulator: framing, schemas, authorisation, physics."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.gateway import framing
from ingest.gateway.schema_compiler import is_rfc3339
from ingest.gateway.schemas import SchemaSet
from ingest.gateway.server import charge_point_id_from_path
from ingest.gateway.services import decide_authorization
from ingest.gateway.v16 import measured_at
from ingest.simulator.config import FleetConfig
from ingest.simulator.physics import (
    ChargingState,
    EnergyRegister,
    Ev,
    charging_power_w,
    draw_ev,
)
from ingest.simulator.report import FleetReport, SessionTruth
from store.id_tokens import IdTagRecord

NOW = datetime(2026, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "kind", "uid", "code"),
    [
        ('[2,"a","Heartbeat",{}]', framing.CallFrame, "a", None),
        ('[3,"b",{"x":1}]', framing.CallResultFrame, "b", None),
        ('[4,"c","InternalError","d",{}]', framing.CallErrorFrame, "c", None),
        ('[2,"m-1","Heartbeat",{', framing.FrameError, "m-1", "FormationViolation"),
        ("garbage", framing.FrameError, "-1", "FormationViolation"),
        (b"\xff\xfe", framing.FrameError, "-1", "FormationViolation"),
        ("42", framing.FrameError, "-1", "FormationViolation"),
        ("[]", framing.FrameError, "-1", "FormationViolation"),
        ('[2,"x"]', framing.FrameError, "x", "ProtocolError"),
        ('[2,"x","A"]', framing.FrameError, "x", "ProtocolError"),
        ('[2,5,"A",{}]', framing.FrameError, "-1", "FormationViolation"),
        ('[true,"x","A",{}]', framing.FrameError, "x", "FormationViolation"),
        ('[9,"x","A",{}]', framing.FrameError, "x", "FormationViolation"),
        ('[2,"x","A",[]]', framing.FrameError, "x", "FormationViolation"),
        ('[2,"' + "i" * 37 + '","A",{}]', framing.FrameError, "-1", "FormationViolation"),
        ('[3,"x",[]]', framing.FrameError, "x", "FormationViolation"),
    ],
)
def test_frame_classification(raw: str | bytes, kind: type, uid: str, code: str | None) -> None:
    frame = framing.parse_frame(raw)
    assert isinstance(frame, kind)
    assert frame.unique_id == uid
    if code is not None:
        assert isinstance(frame, framing.FrameError)
        assert frame.error_code == code


@given(st.text(max_size=200))
def test_any_text_is_classified_without_raising(text: str) -> None:
    frame = framing.parse_frame(text)
    assert frame.unique_id


def test_schema_violations_use_ocpp16_codes() -> None:
    schemas = SchemaSet("1.6")
    assert schemas.warm() > 50
    ok = {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "2026-01-05T10:00:00Z"}
    assert schemas.validate("StartTransaction", ok) is None
    cases = {
        "ProtocolError": {k: v for k, v in ok.items() if k != "idTag"},
        "TypeConstraintViolation": {**ok, "meterStart": "0"},
        "FormationViolation": {**ok, "bogus": 1},
    }
    for code, payload in cases.items():
        violation = schemas.validate("StartTransaction", payload)
        assert violation is not None
        assert violation.code == code
    bad_time = schemas.validate("StartTransaction", {**ok, "timestamp": "2026-01-05 10:00"})
    assert bad_time is not None
    assert bad_time.code == "TypeConstraintViolation"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2026-01-05T10:00:00Z", True),
        ("2026-01-05T10:00:00.123456789+01:00", True),
        ("2026-01-05t10:00:00z", True),
        ("2026-01-05T10:00:00", False),  # no offset
        ("2026-13-05T10:00:00Z", False),
        ("2026-01-05", False),
        ("yesterday", False),
    ],
)
def test_rfc3339(value: str, valid: bool) -> None:
    assert is_rfc3339(value) is valid


def test_authorization_decisions() -> None:
    def rec(status: str = "Accepted", expiry: datetime | None = None) -> IdTagRecord:
        return IdTagRecord("T", status, expiry, "P")

    assert decide_authorization(None, NOW).status == "Invalid"
    assert decide_authorization(rec("Blocked"), NOW).status == "Blocked"
    assert decide_authorization(rec("Expired"), NOW).status == "Expired"
    assert decide_authorization(rec("Invalid"), NOW).status == "Invalid"
    assert decide_authorization(rec(expiry=NOW - timedelta(seconds=1)), NOW).status == "Expired"
    ok = decide_authorization(rec(expiry=NOW + timedelta(days=1)), NOW)
    assert (ok.status, ok.parent_id_tag, ok.expiry_date) == (
        "Accepted",
        "P",
        NOW + timedelta(days=1),
    )


def test_measured_at_prefers_the_payload_time() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    assert measured_at("Heartbeat", {}, NOW) == NOW
    assert measured_at("StopTransaction", {"timestamp": "2026-01-01T00:00:00Z"}, NOW) == t
    mv = {
        "meterValue": [{"timestamp": "2026-01-01T00:00:00Z"}, {"timestamp": "2026-01-01T00:01:00Z"}]
    }
    assert measured_at("MeterValues", mv, NOW) == t + timedelta(minutes=1)
    assert measured_at("MeterValues", {"meterValue": [{"timestamp": "bad"}]}, NOW) == NOW


@pytest.mark.parametrize(
    ("path", "cp_id"),
    [
        ("/ocpp/CP-1", "CP-1"),
        ("/ocpp/CP%201", "CP 1"),
        ("/ocpp/", None),
        ("/ocpp/a/b", None),
        ("/other/CP-1", None),
        ("/ocpp/" + "x" * 65, None),
        ("/ocpp/CP-1?x=1", "CP-1"),
    ],
)
def test_station_path(path: str, cp_id: str | None) -> None:
    assert charge_point_id_from_path(path) == cp_id


def test_power_curve_tapers_and_never_exceeds_limits() -> None:
    assert charging_power_w(0.5, 11_000, 22_000) == 11_000
    assert charging_power_w(0.5, 50_000, 22_000) == 22_000
    values = [charging_power_w(s / 100, 22_000, 22_000) for s in range(80, 101)]
    assert values == sorted(values, reverse=True)
    assert values[-1] == 0.0
    assert values[-2] > 0


@given(st.integers(0, 2**31), st.lists(st.floats(0, 10_000), max_size=50))
def test_register_is_whole_wh_and_only_increases(start: int, deltas: list[float]) -> None:
    reg = EnergyRegister(start)
    seen = [reg.wh]
    for d in deltas:
        seen.append(reg.add(d))
    assert seen == sorted(seen)
    assert all(isinstance(v, int) for v in seen)
    with pytest.raises(ValueError, match="energy"):
        reg.add(-1)


def test_charging_session_reaches_target_or_leaves() -> None:
    ev = Ev(battery_wh=40_000, soc_start=0.7, soc_target=0.9, max_power_w=11_000, dwell_s=10 * 3600)
    state = ChargingState(ev=ev, soc=ev.soc_start, station_max_w=22_000)
    delivered = 0.0
    while state.done is None:
        delivered += state.step(60)
    assert state.done == "Local"
    assert delivered == pytest.approx(0.2 * 40_000, rel=0.01)
    draws = [draw_ev(random.Random(i), mean_dwell_s=3600) for i in range(50)]
    assert all(0 < d.soc_start < d.soc_target <= 1.0 for d in draws)


def test_fleet_report_is_json_serialisable() -> None:
    report = FleetReport(stations=FleetConfig(stations=2).station_ids())
    report.sessions.append(SessionTruth("SIM-0001", 1, 7, "T", 10, 25, 15, "a", "b", "Local", 3))
    assert '"energy_wh": 15' in report.to_json()
    assert report.stations == ["SIM-0001", "SIM-0002"]
    assert report.total_energy_wh == 15
