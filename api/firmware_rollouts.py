"""The firmware rollout worker: a task of the API's lifespan (every replica runs one;
``FOR UPDATE SKIP LOCKED`` on the rollout rows makes one replica drive each rollout per
round). Each round, for every pending or running rollout:

1. pending -> running;
2. the stations sent a command move on with the FirmwareStatusNotifications the gateway
   stored since (2.0.1: those with the command's requestId) and the command's outcome,
   or time out (``station_timeout_s`` after sending);
3. the current wave's decision (:func:`models.firmware_rollout.wave_decision`): pause
   (failures over the threshold), the next wave (or completed after the last), or wait
   and send update-firmware to the wave's queued stations whose maintenance window is
   open now.

Commands go through the API's own path (``api.command_service.Submission``: row first,
then ``ocpp.commands``) with the idempotency key ``<rollout id>:<station>`` of the
rollout's own principal, so a round that dies between queueing a station's command and
recording it finds the same command the next time: nothing is sent twice, and a restart
continues from the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from fastapi import FastAPI

from api.command_service import Submission
from api.problems import ProblemError
from api.routers.station_commands import typed_build
from api.schemas.firmware import UpdateFirmwareCreate
from bus.times import utc_now
from models import firmware_rollout as logic
from runtime.tasks import cancel_and_wait
from store import firmware, firmware_rollouts
from store.api_keys import ApiPrincipal, Role
from store.firmware_rollouts import Rollout, RolloutStation

log = logging.getLogger("chargeflow.api.firmware_rollouts")
Clock = Callable[[], datetime]
PROGRESSING = frozenset({"sent", "downloading", "installing"})


def window_of(rollout: Rollout) -> logic.Window | None:
    w = rollout.window
    if w is None:
        return None
    return logic.Window(w["start_hour"], w["end_hour"], frozenset(w["days"]), w["zone"])


class RolloutWorker:
    def __init__(self, app: FastAPI, clock: Clock = utc_now) -> None:
        self.app = app
        self.clock = clock

    async def run(self, tick_s: float) -> None:
        while True:
            try:
                await self.round()
            except (psycopg.Error, OSError) as exc:
                log.warning("firmware rollout round failed, retrying: %r", exc)
            except Exception:  # a bug in one round must not end the worker for good
                log.exception("firmware rollout round failed, retrying")
            await asyncio.sleep(tick_s)

    async def round(self) -> None:
        pool = self.app.state.pool
        async with firmware_rollouts.locked_active(pool) as (conn, rollouts):
            for rollout in rollouts:
                await self._drive(conn, rollout)

    async def _drive(self, conn: psycopg.AsyncConnection[Any], rollout: Rollout) -> None:
        pool, now = self.app.state.pool, self.clock()
        if rollout.status == "pending":
            await firmware_rollouts.advance(conn, rollout.rollout_id, rollout.current_wave,
                                            logic.transition("pending", "start"))  # fmt: skip
        stations = await firmware_rollouts.stations(pool, rollout.rollout_id)
        states = {s.charge_point_id: await self._progress(rollout, s, now) for s in stations}
        wave = [s for s in stations if s.wave == rollout.current_wave]
        decision = logic.wave_decision(
            [states[s.charge_point_id] for s in wave],
            rollout.failure_threshold,
            rollout.threshold_unit,  # type: ignore[arg-type]
            waived=rollout.waived_wave == rollout.current_wave,
        )
        if decision == "pause":
            failed = sum(1 for s in wave if states[s.charge_point_id] in logic.FAILED_STATES)
            reason = f"wave {rollout.current_wave + 1}: {failed} of {len(wave)} stations failed"
            await firmware_rollouts.set_status(
                conn, rollout.rollout_id, "running", "paused", reason
            )
        elif decision == "next":
            last = rollout.current_wave >= max(s.wave for s in stations)
            await firmware_rollouts.advance(
                conn,
                rollout.rollout_id,
                rollout.current_wave + (0 if last else 1),
                "completed" if last else "running",
            )
        else:
            window = window_of(rollout)
            for s in wave:
                if s.state == "queued" and logic.window_open(window, now, s.site_zone):
                    await self._send(rollout, s)

    async def _progress(self, rollout: Rollout, s: RolloutStation, now: datetime) -> str:
        """The station's state now (stored when it changed)."""
        if s.state not in PROGRESSING or s.sent_at is None:
            return s.state
        seen = [
            f.status
            for f in await firmware.statuses_since(
                self.app.state.pool, [s.charge_point_id], s.sent_at
            )
            if s.request_id is None or f.request_id == s.request_id
        ]
        state = logic.station_state(s.state, seen, s.command_status)
        if logic.timed_out(state, s.sent_at, now, rollout.station_timeout_s):
            state = "timed_out"
        if state != s.state:
            last = seen[-1] if seen else s.command_status
            await firmware_rollouts.set_station_state(
                self.app.state.pool, rollout.rollout_id, s.charge_point_id, state, last
            )
        return state

    async def _send(self, rollout: Rollout, s: RolloutStation) -> None:
        pool = self.app.state.pool
        body = UpdateFirmwareCreate.model_validate(rollout.firmware)
        submission = Submission(
            db=pool,
            producer=self.app.state.producer,
            config=self.app.state.config,
            principal=rollout_principal(rollout),
            idempotency_key=f"{rollout.rollout_id}:{s.charge_point_id}",
        )
        try:
            record, _ = await submission.submit(
                "update-firmware",
                s.charge_point_id,
                body,
                typed_build(pool, s.charge_point_id, body),
            )
        except ProblemError as exc:
            await firmware_rollouts.set_station_state(
                pool, rollout.rollout_id, s.charge_point_id, "failed", str(exc.detail)[:200]
            )
            return
        request_id = record.payload.get("requestId")
        await firmware_rollouts.mark_sent(
            pool, rollout.rollout_id, s.charge_point_id, record.command_id, request_id,
            record.requested_at,
        )  # fmt: skip


def rollout_principal(rollout: Rollout) -> ApiPrincipal:
    """Whom a rollout's commands are requested by (its own idempotency namespace)."""
    return ApiPrincipal(
        key_id=f"rollout:{rollout.rollout_id}",
        name=f"{rollout.created_by} (rollout {rollout.name})",
        role=Role.OPERATOR,
    )


@asynccontextmanager
async def rollout_worker(app: FastAPI, tick_s: float) -> AsyncIterator[None]:
    """The worker as a task of the block (none when ``tick_s`` is 0), cancelled and
    awaited at its end."""
    if tick_s <= 0:
        yield
        return
    task = asyncio.create_task(RolloutWorker(app).run(tick_s), name="firmware-rollouts")
    try:
        yield
    finally:
        await cancel_and_wait(task)
