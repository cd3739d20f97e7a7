"""The pure parts of firmware rollouts (models.firmware_rollout) and of the simulator's
update (ingest.simulator.firmware)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ingest.simulator.firmware import firmware_plan
from models.firmware_rollout import (
    InvalidTransition,
    Window,
    plan_waves,
    station_state,
    timed_out,
    transition,
    wave_decision,
    window_open,
)

ALL_DAYS = frozenset(range(7))
MONDAY_NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)  # a Monday


def test_waves_cover_every_station_once_in_order() -> None:
    stations = [f"CP-{i}" for i in range(7)]
    for size, unit in ((1, "count"), (3, "count"), (10, "count"), (1, "percent"), (30, "percent"),
                       (100, "percent")):  # fmt: skip
        waves = plan_waves(stations, size, unit)  # type: ignore[arg-type]
        assert [cp for wave in waves for cp in wave] == stations
        assert all(waves)
    assert [len(w) for w in plan_waves(stations, 30, "percent")] == [3, 3, 1]
    assert [len(w) for w in plan_waves(stations, 1, "percent")] == [1] * 7
    assert plan_waves([], 2, "count") == []


def test_window_in_utc_a_zone_or_the_site_zone() -> None:
    day = Window(start_hour=9, end_hour=17, days=ALL_DAYS)
    assert window_open(day, MONDAY_NOON, "Asia/Tokyo")
    assert not window_open(day, MONDAY_NOON.replace(hour=17), "UTC")  # end is exclusive
    assert window_open(day, MONDAY_NOON.replace(hour=9), "UTC")
    site = Window(start_hour=9, end_hour=17, days=ALL_DAYS, zone="site")
    assert not window_open(site, MONDAY_NOON, "Asia/Tokyo")  # 21:00 in Tokyo
    assert window_open(site, MONDAY_NOON, "Europe/Berlin")  # 13:00
    assert window_open(None, MONDAY_NOON, "UTC")
    assert window_open(Window(3, 3, frozenset({0})), MONDAY_NOON, "UTC")  # all Monday
    assert not window_open(Window(3, 3, frozenset({1})), MONDAY_NOON, "UTC")


def test_a_window_past_midnight_belongs_to_the_day_it_opens() -> None:
    sunday_night = Window(start_hour=22, end_hour=4, days=frozenset({6}))
    sunday_23 = MONDAY_NOON - timedelta(hours=13)
    assert window_open(sunday_night, sunday_23, "UTC")
    assert window_open(sunday_night, MONDAY_NOON.replace(hour=3), "UTC")  # still Sunday's
    assert not window_open(sunday_night, MONDAY_NOON.replace(hour=4), "UTC")
    assert not window_open(sunday_night, MONDAY_NOON.replace(hour=23), "UTC")  # Monday's


def test_station_states_follow_the_notifications_and_the_command() -> None:
    v201 = ["Downloading", "Downloaded", "SignatureVerified", "Installing", "Installed"]
    assert station_state("sent", v201, "accepted") == "installed"
    assert station_state("sent", v201[:3], "accepted") == "downloading"
    assert station_state("sent", [], None) == "sent"
    assert station_state("sent", ["Downloading", "DownloadFailed"], "accepted") == "failed"
    assert station_state("sent", ["InvalidSignature"], "accepted") == "failed"
    for outcome in ("rejected", "offline", "expired", "timed_out", "failed"):
        assert station_state("sent", [], outcome) == "failed"
    assert station_state("installed", ["InstallationFailed"], "failed") == "installed"


def test_a_station_times_out_only_when_sent_and_unfinished() -> None:
    sent = MONDAY_NOON - timedelta(seconds=61)
    assert timed_out("installing", sent, MONDAY_NOON, 60)
    assert not timed_out("installing", sent, MONDAY_NOON, 120)
    assert not timed_out("installed", sent, MONDAY_NOON, 60)
    assert not timed_out("queued", None, MONDAY_NOON, 60)


def test_wave_decisions() -> None:
    assert wave_decision(["installed", "installed"], 0, "count") == "next"
    assert wave_decision(["installed", "sent"], 0, "count") == "wait"
    assert wave_decision(["timed_out", "sent"], 0, "count") == "pause"  # at once
    assert wave_decision(["failed", "installed", "installed"], 1, "count") == "next"
    third = Decimal("0.34")
    assert wave_decision(["failed", "installed", "installed"], third, "fraction") == "next"
    assert wave_decision(["failed", "failed", "installed"], third, "fraction") == "pause"
    assert wave_decision([], 0, "fraction") == "next"


def test_state_machine() -> None:
    assert transition("pending", "start") == "running"
    assert transition("paused", "resume") == "running"
    assert transition("running", "complete") == "completed"
    for status in ("pending", "running", "paused"):
        assert transition(status, "cancel") == "cancelled"
    for status, event in (("completed", "resume"), ("cancelled", "pause"), ("running", "resume"),
                          ("paused", "pause"), ("completed", "cancel")):  # fmt: skip
        with pytest.raises(InvalidTransition, match=f"a {status} rollout cannot {event}"):
            transition(status, event)


def test_the_simulated_update_by_version_and_seeded_failures() -> None:
    ok = firmware_plan("https://fw.example/dir/sim-2.1.bin", "CP-1", v201=False)
    assert ok.steps == ("Downloading", "Downloaded", "Installing", "Installed")
    assert ok.version == "sim-2.1"  # the stem: only the last suffix goes
    every = firmware_plan("https://fw.example/a.bin?install_fail=*", "CP-7", v201=True)
    assert every.steps[-1] == "InstallationFailed"
    assert every.version is None
    other = firmware_plan("https://fw.example/a.bin?download_fail=CP-2", "CP-1", v201=True)
    assert other.steps[-1] == "Installed"
    assert firmware_plan("https://fw.example/", "CP-1", v201=False).version == "updated"
