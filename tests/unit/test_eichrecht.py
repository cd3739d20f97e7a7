"""Eichrecht on the bill (pure, :mod:`billing.eichrecht`): the billed energy is signed
End - signed Start or the session is held; a smart meter's figure is overridden when the
station's own register is the signed span; time-based tariffs on a signing station are
flagged on the CDR."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from msgspec.structs import replace

from billing.cdrs import CdrLocation, CdrParty, build_cdr, credit_cdr
from billing.cost import price_session
from billing.eichrecht import (
    SignedEnergy,
    compliance_warnings,
    signed_energy_decision,
    signed_span_wh,
)
from billing.metered import usage_from_samples
from billing.signed_data import SignedValue
from bus.sessions import EnergySource, Quality, SessionClosed
from tests.support.billing import component, element, tariff

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
BEGIN, END = "Transaction.Begin", "Transaction.End"
# A smart meter the sessions flow billed (21 400 Wh); the station's register and its
# signed values say 21 000 Wh.
SESSION = SessionClosed(
    message_id="m-1",
    session_id="0d4f6a3e-5d7b-4b7e-9f0e-2a9c6c1b8e11",
    charge_point_id="CP-1",
    connector_id=1,
    transaction_id="42",
    started_at=T0,
    stopped_at=T0 + timedelta(hours=2),
    closed_at=T0 + timedelta(hours=2, seconds=1),
    energy_wh=21_400,
    energy_source=EnergySource.SMART_METER,
    quality=Quality.EXACT,
    id_tag="RFID-1",
    meter_start_wh=500_000,
    meter_stop_wh=521_000,
    station_energy_wh=21_000,
    smart_meter_energy_wh=21_400,
    smart_meter_id="SM-1",
)
ENERGY_ONLY = tariff(element(component("ENERGY", "0.40")), id="KWH")
BY_TIME = tariff(element(component("ENERGY", "0.30"), component("TIME", "1.20", step=60)), id="MIN")


def signed(
    context: str,
    register: str | None,
    *,
    unit: str = "kWh",
    minutes: int = 0,
    measurand: str = "Energy.Active.Import.Register",
) -> SignedValue:
    return SignedValue(
        T0 + timedelta(minutes=minutes),
        context,
        f"OCMF|{{{context}}}|{{}}",
        "OCMF",
        plain_value=None if register is None else Decimal(register),
        unit=unit,
        measurand=measurand,
    )


EXPORT = "Energy.Active.Export.Register"
SIGNED = [signed(BEGIN, "500.000"), signed(END, "521.000", minutes=120)]


def test_the_signed_span_is_end_minus_start_in_wh() -> None:
    assert signed_span_wh(SIGNED) == 21_000
    in_wh = [signed(BEGIN, "500000", unit="Wh"), signed(END, "521000.9", unit="Wh")]
    assert signed_span_wh(in_wh) == 21_000  # floored, as the flow floors its figures
    no_unit = [signed(BEGIN, "100", unit=""), signed(END, "350", unit="")]
    assert signed_span_wh(no_unit) == 250  # OCPP's default: Wh
    intermediate = signed("Sample.Periodic", "510.000", minutes=60)
    assert signed_span_wh([SIGNED[1], intermediate, SIGNED[0]]) == 21_000
    later_start = signed(BEGIN, "505.000", minutes=5)  # a resent Start: the first counts
    assert signed_span_wh([*SIGNED, later_start]) == 21_000


@pytest.mark.parametrize(
    "values",
    [
        [],
        [signed(BEGIN, "500.000")],  # only Start (no End sent or stored)
        [signed(END, "521.000")],
        [signed(BEGIN, None), signed(END, None)],  # no plain registers
        [signed(BEGIN, "500.000"), signed(END, None)],
        [signed(BEGIN, "500", unit="W"), signed(END, "521", unit="W")],  # not energy
        [signed(BEGIN, "500.000", measurand=EXPORT), signed(END, "521.000", measurand=EXPORT)],
    ],
    ids=["none", "start-only", "end-only", "no-plain", "no-plain-end", "not-energy", "export"],
)
def test_without_a_signed_start_and_end_register_nothing_is_checked(
    values: list[SignedValue],
) -> None:
    assert signed_span_wh(values) is None
    decision = signed_energy_decision(replace(SESSION, station_energy_wh=1), values)
    assert decision.outcome is SignedEnergy.UNSIGNED
    assert decision.reason is None


def test_a_session_billing_its_signed_span_is_billed_as_it_is() -> None:
    station = replace(SESSION, energy_wh=21_000, energy_source=EnergySource.STATION_REGISTER)
    decision = signed_energy_decision(station, SIGNED)
    assert decision.outcome is SignedEnergy.AGREES
    assert decision.signed_span_wh == 21_000


def test_a_smart_meter_is_overridden_when_the_station_register_is_the_signed_span() -> None:
    decision = signed_energy_decision(SESSION, SIGNED)
    assert decision.outcome is SignedEnergy.STATION_REGISTER
    assert decision.signed_span_wh == 21_000  # never the smart meter's 21 400


@pytest.mark.parametrize("station_energy_wh", [21_400, 20_999, None])
def test_a_figure_that_is_not_the_signed_span_is_held_naming_both(
    station_energy_wh: int | None,
) -> None:
    decision = signed_energy_decision(replace(SESSION, station_energy_wh=station_energy_wh), SIGNED)
    assert decision.outcome is SignedEnergy.HOLD
    assert decision.reason is not None
    assert "21000 Wh (signed End - Start)" in decision.reason
    assert "21400 Wh (smart_meter)" in decision.reason
    on_station = replace(
        SESSION,
        energy_wh=21_001,
        energy_source=EnergySource.STATION_REGISTER,
        station_energy_wh=21_001,
    )
    assert signed_energy_decision(on_station, SIGNED).outcome is SignedEnergy.HOLD


def test_time_based_components_on_a_signing_station_are_flagged() -> None:
    (warning,) = compliance_warnings(BY_TIME, SIGNED, 21_000)
    assert "(TIME)" in warning
    assert "tariff MIN" in warning
    assert "not certified" in warning
    parking = tariff(element(component("ENERGY", "0.3"), component("PARKING_TIME", "6")))
    assert "(PARKING_TIME)" in compliance_warnings(parking, SIGNED, 21_000)[0]
    assert compliance_warnings(ENERGY_ONLY, SIGNED, 21_000) == []
    assert compliance_warnings(BY_TIME, [], 21_000) == []  # the meter signs nothing
    assert compliance_warnings(BY_TIME, [signed(BEGIN, None)], 21_000) != []  # still signing


def test_an_energy_that_is_not_the_signed_span_is_flagged() -> None:
    # A clerk's release or correction bills whatever the clerk decided; the CDR says so.
    (warning,) = compliance_warnings(ENERGY_ONLY, SIGNED, 21_400)
    assert "21400 Wh is not the signed span 21000 Wh" in warning
    assert compliance_warnings(ENERGY_ONLY, SIGNED[:1], 21_400) == []  # no span: no check


def test_the_cdr_carries_its_compliance_warnings_and_its_credit_too() -> None:
    usage = usage_from_samples(
        started_at=SESSION.started_at,
        stopped_at=T0 + timedelta(hours=2),
        meter_start_wh=SESSION.meter_start_wh,
        meter_stop_wh=SESSION.meter_stop_wh,
        energy_wh=21_000,
        samples=[],
        time_zone="Europe/Berlin",
    )
    location = CdrLocation(id="S", evse_uid="CP-1*1", evse_id="DE*CFL*ECP-1*1", connector_id="1")

    def cdr(warnings: list[str]) -> dict[str, object]:
        return build_cdr(
            SESSION,
            price_session(BY_TIME, usage),
            party=CdrParty("DE", "CFL"),
            location=location,
            last_updated=SESSION.closed_at,
            compliance_warnings=warnings,
        )

    assert "compliance_warnings" not in cdr([])
    flagged = cdr(compliance_warnings(BY_TIME, SIGNED, 21_000))
    assert flagged["compliance_warnings"] == compliance_warnings(BY_TIME, SIGNED, 21_000)
    credit = credit_cdr(flagged, last_updated=SESSION.closed_at + timedelta(hours=1))
    assert credit["compliance_warnings"] == flagged["compliance_warnings"]
