"""CDRs from closed sessions: which are billed and which held, the CDR's fields, credit
CDRs that cancel one to the cent, and the priced session built from stored samples."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from msgspec.structs import replace

from billing.cdrs import (
    MAX_CDR_ID,
    CdrLocation,
    CdrParty,
    ClerkDecision,
    Review,
    build_cdr,
    cdr_id,
    credit_cdr,
    review,
)
from billing.cost import price_session
from billing.metered import Sample, corrected_span, usage_from_samples
from billing.session_usage import SessionUsage, UsageError
from bus.measurands import CURRENT, ENERGY_REGISTER, POWER
from bus.sessions import EnergySource, Quality, SessionClosed
from tests.support.billing import component, element, tariff

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 16:00 in Amsterdam
SESSION = SessionClosed(
    message_id="m-1",
    session_id="0d4f6a3e-5d7b-4b7e-9f0e-2a9c6c1b8e11",
    charge_point_id="CP-1",
    connector_id=2,
    transaction_id="42",
    started_at=T0,
    stopped_at=T0 + timedelta(hours=2),
    closed_at=T0 + timedelta(hours=2, seconds=1),
    energy_wh=22_000,
    energy_source=EnergySource.STATION_REGISTER,
    quality=Quality.EXACT,
    id_tag="RFID-1234",
    meter_start_wh=1_000_000,
    meter_stop_wh=1_022_000,
)
PEAK = tariff(
    element(component("ENERGY", "0.45"), start_time="17:00", end_time="20:00"),
    element(component("ENERGY", "0.25"), component("FLAT", "0.50")),
)
PARTY = CdrParty("NL", "CFL")
LOCATION = CdrLocation(id="SITE-1", evse_uid="CP-1*2", evse_id="NL*CFL*E1*2", connector_id="2")


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def usage(samples: list[Sample], **overrides: object) -> SessionUsage:
    fields: dict[str, object] = {
        "started_at": SESSION.started_at,
        "stopped_at": SESSION.stopped_at,
        "meter_start_wh": SESSION.meter_start_wh,
        "meter_stop_wh": SESSION.meter_stop_wh,
        "energy_wh": SESSION.energy_wh,
        "samples": samples,
        "time_zone": "Europe/Amsterdam",
    }
    fields.update(overrides)
    return usage_from_samples(**fields)  # type: ignore[arg-type]


def register(minute: int, wh: int, unit: str = "Wh") -> Sample:
    value = Decimal(wh) / 1000 if unit == "kWh" else Decimal(wh)
    return Sample(at(minute), ENERGY_REGISTER, "", unit, value)


@pytest.mark.parametrize(
    ("changes", "held_because"),
    [
        ({"quality": Quality.CORRECTED, "quality_reasons": ["register_jump"]}, "register_jump"),
        ({"quality": Quality.ESTIMATED}, "quality estimated"),
        ({"quality": Quality.MISSING, "energy_wh": None}, "no energy figure"),
        ({"stopped_at": None}, "no stop time"),
    ],
)
def test_only_exact_stopped_sessions_are_billed(
    changes: dict[str, object], held_because: str
) -> None:
    assert review(SESSION).decision is Review.BILL
    held = review(replace(SESSION, **changes))
    assert held.decision is Review.HOLD
    assert any(held_because in reason for reason in held.reasons)


def test_the_cdr_carries_the_session_the_totals_and_the_signed_data_verbatim() -> None:
    priced = price_session(PEAK, usage([register(60, 1_011_000)]))
    signed = {
        "encoding_method": "OCMF",
        "signed_values": [{"nature": "START", "signed_data": "OCMF|{...}"}],
    }
    cdr = build_cdr(
        SESSION,
        priced,
        party=PARTY,
        location=LOCATION,
        last_updated=SESSION.closed_at,
        meter_id="MTR-7",
        signed_data=signed,
    )
    assert cdr["id"] == "0D4F6A3E5D7B4B7E9F0E2A9C6C1B8E11"
    assert cdr["session_id"] == SESSION.session_id
    assert cdr["cdr_token"]["uid"] == "RFID-1234"
    assert cdr["cdr_location"]["evse_uid"] == "CP-1*2"
    assert cdr["signed_data"] is signed
    assert cdr["meter_id"] == "MTR-7"
    # 16:00-17:00 local 11 kWh x 0.25, 17:00-18:00 11 kWh x 0.45, start fee 0.50.
    assert cdr["total_energy"] == Decimal(22)
    assert cdr["total_cost"]["excl_vat"] == Decimal("8.20")
    assert cdr["credit"] is False
    assert cdr["last_updated"] == "2026-03-02T17:00:01Z"


def test_a_clerks_correction_is_on_the_cdr_and_spread_as_the_register_rose() -> None:
    held = replace(SESSION, quality=Quality.ESTIMATED)
    # 16 of the measured 22 kWh before 17:00 local; the clerk bills 11 kWh.
    samples = [register(60, 1_016_000)]
    span = corrected_span(
        samples,
        started_at=T0,
        stopped_at=at(120),
        meter_start_wh=held.meter_start_wh,
        meter_stop_wh=held.meter_stop_wh,
        energy_wh=11_000,
    )
    assert span == (1_000_000, 1_022_000)
    spread = usage(samples, meter_start_wh=span[0], meter_stop_wh=span[1], energy_wh=11_000)
    assert [r.energy_wh for r in spread.readings] == [0, 8_000, 11_000]
    # The stop register missing: the corrected energy ends the span, unless the samples
    # rose further (then they are scaled down onto it).
    for energy, expected in ((20_000, (1_000_000, 1_020_000)), (11_000, (1_000_000, 1_016_000))):
        assert expected == corrected_span(
            samples, started_at=T0, stopped_at=at(120), meter_start_wh=1_000_000,
            meter_stop_wh=None, energy_wh=energy,
        )  # fmt: skip
    decision = ClerkDecision(
        "correct", by="clerk", at=held.closed_at, note="meter photo", corrected_energy_wh=11_000,
        measured_energy_wh=22_000,
    )  # fmt: skip
    cdr = build_cdr(
        held,
        price_session(PEAK, spread),
        party=PARTY,
        location=LOCATION,
        last_updated=held.closed_at,
        decision=decision,
    )
    assert cdr["energy_quality"] == "corrected"
    assert cdr["review"] == {
        "action": "correct",
        "by": "clerk",
        "at": "2026-03-02T17:00:01Z",
        "note": "meter photo",
        "corrected_energy_wh": 11_000,
        "measured_energy_wh": 22_000,
    }
    assert cdr["total_energy"] == Decimal(11)
    assert credit_cdr(cdr, last_updated=at(180))["review"] == cdr["review"]


def test_a_release_keeps_the_flows_quality_and_decisions_are_checked() -> None:
    held = replace(SESSION, quality=Quality.ESTIMATED)
    released = build_cdr(
        held,
        price_session(PEAK, usage([register(60, 1_016_000)])),
        party=PARTY,
        location=LOCATION,
        last_updated=held.closed_at,
        decision=ClerkDecision("release", by="clerk", at=held.closed_at),
    )
    assert released["energy_quality"] == "estimated"
    assert released["review"] == {"action": "release", "by": "clerk", "at": "2026-03-02T17:00:01Z"}
    with pytest.raises(ValueError, match="only a correction"):
        ClerkDecision("release", by="clerk", at=T0, corrected_energy_wh=1)
    with pytest.raises(ValueError, match="release or a correction"):
        ClerkDecision("write_off", by="clerk", at=T0)
    # No rising register span (no samples, no start register): billed linearly.
    assert corrected_span([], started_at=T0, stopped_at=at(120), meter_start_wh=None,
                          meter_stop_wh=1_022_000, energy_wh=11_000) is None  # fmt: skip


def test_a_credit_cdr_cancels_the_original_to_the_cent() -> None:
    priced = price_session(PEAK, usage([register(60, 1_011_000)]))
    original = build_cdr(
        SESSION, priced, party=PARTY, location=LOCATION, last_updated=SESSION.closed_at
    )
    credit = credit_cdr(original, last_updated=at(300))
    assert credit["id"] == original["id"] + "-C"
    assert len(cdr_id(SESSION.session_id, revision=999) + "-C") <= MAX_CDR_ID
    assert credit["credit"] is True
    assert credit["credit_reference_id"] == original["id"]
    for name in ("total_cost", "total_fixed_cost", "total_energy_cost", "total_time_cost"):
        for part in ("excl_vat", "incl_vat"):
            assert original[name][part] + credit[name][part] == 0
            assert str(credit[name][part]) != "-0.00"
    assert (
        sum((line["cost"]["excl_vat"] for line in credit["cost_breakdown"]), Decimal(0))
        == (credit["total_cost"]["excl_vat"])
    )
    with pytest.raises(ValueError, match="credit CDR is not credited again"):
        credit_cdr(credit, last_updated=at(301))
    assert cdr_id(SESSION.session_id, 2) != cdr_id(SESSION.session_id)


def test_samples_place_the_billed_energy_in_time_and_units_are_converted() -> None:
    priced = price_session(PEAK, usage([register(60, 1_011_000, unit="kWh")]))
    assert [p.energy_kwh for p in priced.periods] == [Decimal(11), Decimal(11)]


def test_energy_billed_from_a_smart_meter_is_spread_as_the_station_register_rose() -> None:
    # The billing meter measured 20 kWh; the station register rose 22 kWh, half of it in
    # the first hour: the first hour bills half of the 20.
    u = usage([register(60, 1_011_000)], energy_wh=20_000)
    assert [r.energy_wh for r in u.readings] == [0, 10_000, 20_000]


def test_a_sample_outside_the_session_registers_is_dropped() -> None:
    u = usage([register(30, 5), register(60, 1_011_000), register(90, 2_000_000)])
    assert [r.energy_wh for r in u.readings] == [0, 11_000, 22_000]


def test_power_and_current_come_from_samples_else_from_the_register() -> None:
    samples = [
        register(60, 1_022_000),
        Sample(at(60), POWER, "", "kW", Decimal("0")),
        *(Sample(at(60), CURRENT, phase, "A", Decimal(0)) for phase in ("L1", "L2", "L3")),
        register(90, 1_022_000),
        Sample(at(0), POWER, "", "W", Decimal(99_000)),  # at the start: not a sample inside
    ]
    u = usage(samples)
    readings = u.readings
    assert readings[0].power_w == Decimal(22_000)  # 22 kWh in the first hour
    assert (readings[1].power_w, readings[1].current_a) == (Decimal(0), Decimal(0))
    priced = price_session(
        tariff(element(component("ENERGY", "0.30"), component("PARKING_TIME", "6.00"))), u
    )
    assert [p.parking for p in priced.periods] == [False, True]
    assert priced.total_parking_time_h == 1


def test_bad_sessions_are_refused() -> None:
    with pytest.raises(UsageError, match="stopped before it started"):
        usage([], stopped_at=T0 - timedelta(seconds=1))
    with pytest.raises(UsageError, match="unknown time zone"):
        usage([], time_zone="Nowhere/Land")
