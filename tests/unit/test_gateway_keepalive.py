"""The keepalive's decisions: time the gateway spends behind on a station's frames
never counts against the station; a ping unanswered while the gateway waits does."""

from __future__ import annotations

from ingest.gateway.keepalive import Action, Keepalive


def test_a_quiet_station_is_pinged_then_closed_when_no_pong_comes() -> None:
    ka = Keepalive(interval_s=20, timeout_s=10, last_heard=0.0)
    ka.waiting(0.0)
    assert ka.due(19.9) is Action.NOTHING
    assert ka.due(20.0) is Action.PING
    ka.pinged(20.0)
    assert ka.due(29.9) is Action.NOTHING
    assert ka.due(30.0) is Action.CLOSE


def test_a_pong_or_any_frame_is_proof_of_life() -> None:
    ka = Keepalive(interval_s=20, timeout_s=10, last_heard=0.0)
    ka.waiting(0.0)
    ka.pinged(20.0)
    ka.pong(20.5)
    assert ka.due(40.4) is Action.NOTHING
    assert ka.due(40.5) is Action.PING
    ka.pinged(40.0)
    ka.frame(45.0)  # a CALL instead of the pong: alive
    ka.waiting(45.1)
    assert ka.due(60.0) is Action.NOTHING
    assert ka.due(65.1) is Action.PING


def test_time_the_gateway_is_busy_with_the_station_never_counts() -> None:
    ka = Keepalive(interval_s=20, timeout_s=10, last_heard=0.0)
    ka.waiting(0.0)
    ka.pinged(20.0)
    ka.frame(21.0)  # the station's frames, then a long backlog on the gateway's side
    ka.pinged(21.0)  # (a ping sent just before the backlog started)
    ka.waiting_since = None
    for now in (40.0, 100.0, 1000.0):
        assert ka.due(now) is Action.NOTHING
    ka.waiting(1000.0)  # caught up: the pong (queued behind the frames) has time to come
    assert ka.due(1009.9) is Action.NOTHING
    assert ka.due(1010.0) is Action.CLOSE


def test_zero_disables_pings_and_timeouts() -> None:
    off = Keepalive(interval_s=0, timeout_s=10, last_heard=0.0)
    off.waiting(0.0)
    assert off.due(1e9) is Action.NOTHING
    no_timeout = Keepalive(interval_s=20, timeout_s=0, last_heard=0.0)
    no_timeout.waiting(0.0)
    no_timeout.pinged(20.0)
    assert no_timeout.due(1e9) is Action.NOTHING


def test_answers_the_station_leaves_unread_count_even_while_busy() -> None:
    ka = Keepalive(interval_s=20, timeout_s=10, last_heard=0.0)
    ka.frame(1.0)  # busy with the station's CALL: blocked sending its answer
    ka.writes(2.0, pending=True)
    assert ka.due(11.9) is Action.NOTHING
    ka.writes(5.0, pending=False)  # the station read it meanwhile: starts over
    ka.writes(6.0, pending=True)
    assert ka.due(15.9) is Action.NOTHING
    assert ka.next_check_in(15.9) < 0.2
    assert ka.due(16.0) is Action.CLOSE
