"""The part both versions' charge points share: what happens around a handler."""

from __future__ import annotations

import dataclasses
import logging
from abc import abstractmethod
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol

from ocpp.charge_point import ChargePoint
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, unpack

from bus.times import parse_rfc3339
from ingest.simulator.behaviours.base import Behaviours, Fail, Ignore, Reply
from ingest.simulator.charging_profiles import PURPOSES, InstalledProfile, Period
from ingest.simulator.firmware import STEP_S, firmware_plan
from ingest.simulator.port import StationPort
from ingest.simulator.state import schedule_limit_w

Effect = Callable[[], Coroutine[Any, Any, None]]
# The charging profile of a CALL, for (connector id, purpose).
ProfileOf = Callable[[int, str], InstalledProfile]
# The statuses of the notifications that follow an upload (diagnostics, log).
_UPLOAD_STEPS = ("Uploading", "Uploaded")


class Connection(Protocol):
    """The websocket, as the library uses it."""

    async def send(self, message: str) -> None: ...

    async def recv(self) -> str | bytes: ...


def _instant(value: str | None) -> datetime | None:
    return None if value is None else parse_rfc3339(value)


def _is_call(raw: str | bytes) -> bool:
    """Whether a frame is a CALL ``[2, ...]`` (answers to the station's own CALLs go
    straight to the library)."""
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    return text.lstrip().removeprefix("[").lstrip().startswith("2")


class StationClient(ChargePoint):
    """An ocpp library charge point on one connection of a simulated station.

    Subclasses add the version's ``@on`` handlers, read a CALL's charging profile
    (``profile_of``) and name the status notifications a TriggerMessage may ask for
    (``idle_notifications``). A handler that has more to do after its answer is sent
    (a status, a session, a reboot) calls ``after_answer``, which hands it to the
    station as a task the station owns once the library has sent the answer (not the
    library's ``@after`` hooks: it starts those as tasks nobody owns or awaits).
    """

    # "<...>StatusNotification" -> its CALL's class (sent with status Idle when triggered)
    idle_notifications: ClassVar[dict[str, Callable[..., Any]]]
    # A new profile replaces one with the same connector, purpose and stack level (1.6).
    replaces_same_slot: ClassVar[bool] = False

    def __init__(
        self,
        station: StationPort,
        connection: Connection,
        behaviours: Behaviours,
        *,
        response_timeout: float,
        logger: logging.Logger,
    ) -> None:
        super().__init__(station.cp_id, connection, response_timeout, logger)
        self.station = station
        self.state = station.state
        self.connection = connection
        self.behaviours = behaviours
        self._after: list[Effect] = []

    def after_answer(self, effect: Effect) -> None:
        """Run ``effect`` once the answer to the CALL being handled is sent."""
        self._after.append(effect)

    def send_after_answer(self, payloads: list[Any]) -> None:
        """Send these CALLs, in order, once the answer is sent."""

        async def send() -> None:
            for payload in payloads:
                await self.station.send(payload)

        self.after_answer(send)

    def reboot_after_answer(self, stop_reason: str) -> None:
        """Stop the running sessions and reboot once the answer is sent."""

        async def reboot() -> None:
            for cid in list(self.state.running):
                self.station.stop_session(cid, stop_reason)
            await self.station.reboot()

        self.after_answer(reboot)

    # ------------------------------------------- steps both versions' handlers take

    @abstractmethod
    def profile_of(self, profile: dict[str, Any]) -> ProfileOf:
        """A CALL's (snake_case) charging profile, for the connector it is set on."""

    def remote_start(
        self,
        wanted: int | None,
        id_tag: str,
        authorize: bool,
        charging_profile: dict[str, Any] | None,
        remote_start_id: int | None = None,
    ) -> str:
        """Claim a free connector now, start the session after the answer; the status.
        A 2.0.1 ``remote_start_id`` goes on the transaction's Started event."""
        cid = self.state.free_connector(wanted)
        if cid is None:
            return "Rejected"
        if remote_start_id is not None:
            self.station.dialect.remote_starts[cid] = remote_start_id
        if charging_profile:
            self.add_profile(self.profile_of(charging_profile)(cid, "TxProfile"))
        self.state.starting.add(cid)  # taken from now on, for later commands
        self.after_answer(lambda: self.station.run_session(cid, id_tag, authorize=authorize))
        return "Accepted"

    def remote_stop(self, transaction_id: int | str) -> str:
        cid = self.state.connector_of(transaction_id)
        if cid is None:
            return "Rejected"
        self.station.stop_session(cid, "Remote")
        return "Accepted"

    def change_availability(self, cids: list[int], operative: bool) -> str:
        """Apply it and send the statuses after the answer; the answer's status."""
        change = self.state.change_availability(cids, operative)

        async def notify() -> None:
            for cid in change.notify:
                await self.station.send_status(cid, change.notify_status)

        self.after_answer(notify)
        return change.status

    def set_profile(self, cid: int, charging_profile: dict[str, Any]) -> str:
        """Install a profile (it takes effect after the station's reaction delay); a
        station configured to reject profiles answers Rejected, one that ignores them
        answers Accepted and keeps none."""
        purpose = PURPOSES.get(str(charging_profile["charging_profile_purpose"]))
        if purpose is None or self.state.profile_behaviour == "reject":
            return "Rejected"
        if cid != 0 and cid not in self.state.connectors:
            return "Rejected"
        if purpose == "ChargePointMaxProfile" and cid != 0:
            return "Rejected"  # the station's cap lives on connector 0
        if purpose == "TxProfile" and cid not in self.state.running:
            return "Rejected"  # a TxProfile needs a transaction
        tx = charging_profile.get("transaction_id")
        if tx is not None and str(tx) != str(self.state.running.get(cid)):
            return "Rejected"  # not the connector's transaction
        if self.state.profile_behaviour != "ignore":
            self.add_profile(self.profile_of(charging_profile)(cid, purpose))
        return "Accepted"

    def add_profile(self, profile: InstalledProfile) -> None:
        """Keep ``profile``; it replaces the one with its id (2.0.1 K01.FR.05) and, in 1.6,
        any with its connector, purpose and stack level (3.13.2); the replaced ones stay
        in force until it takes effect. (Two 2.0.1 profiles in one slot: the lower limit
        wins.)"""
        for pid, old in list(self.state.profiles.items()):
            same_slot = self.replaces_same_slot and (
                old.connector_id,
                old.purpose,
                old.stack_level,
            ) == (profile.connector_id, profile.purpose, profile.stack_level)
            if same_slot or pid == profile.profile_id:
                del self.state.profiles[pid]
                self.state.superseded.append(
                    dataclasses.replace(old, superseded_at=profile.effective_from)
                )
        self.state.profiles[profile.profile_id] = profile

    def installed(
        self,
        profile: dict[str, Any],
        schedule: dict[str, Any],
        profile_id: int,
        cid: int,
        purpose: str,
    ) -> InstalledProfile:
        """A (snake_case) profile and its schedule as the station keeps it: every period
        in W, in force from now plus the reaction delay."""
        unit, rating = schedule["charging_rate_unit"], self.station.rating
        periods = tuple(
            Period(
                float(p["start_period"]),
                schedule_limit_w(unit, float(p["limit"]), p.get("number_phases"), rating),
            )
            for p in schedule["charging_schedule_period"]
        )
        tx = profile.get("transaction_id")
        duration = schedule.get("duration")
        return InstalledProfile(
            profile_id,
            cid,
            int(profile["stack_level"]),
            PURPOSES.get(purpose, purpose),
            periods,
            self.station.now() + timedelta(seconds=self.state.reaction_s),
            kind=str(profile.get("charging_profile_kind", "Absolute")),
            start=_instant(schedule.get("start_schedule")),
            duration_s=None if duration is None else float(duration),
            recurrency=profile.get("recurrency_kind"),
            valid_from=_instant(profile.get("valid_from")),
            valid_to=_instant(profile.get("valid_to")),
            transaction_id=None if tx is None else str(tx),
        )

    def trigger(self, what: str, cids: list[int]) -> str:
        """Send the CALLs a TriggerMessage asks for after the answer; the status."""
        payloads = self._triggered(what, cids)
        if payloads is None:
            return "NotImplemented"
        self.send_after_answer(payloads)
        return "Accepted"

    def _triggered(self, what: str, cids: list[int]) -> list[Any] | None:
        """The CALLs a TriggerMessage asks for; None for one the simulator does not send."""
        dialect, now = self.station.dialect, self.station.now()
        if what == "BootNotification":
            return [self.station.boot_request()]
        if what == "Heartbeat":
            return [dialect.heartbeat()]
        if what == "StatusNotification":
            return [
                dialect.current_status(cid, self.state.connector_status(cid), now) for cid in cids
            ]
        if what == "MeterValues":
            return [
                dialect.meter_values(cid, self.station.meter_sample(cid), "Trigger") for cid in cids
            ]
        notification = self.idle_notifications.get(what)
        return None if notification is None else [notification(status="Idle")]

    def update_firmware(
        self, location: str, notification: Callable[..., Any], **fields: Any
    ) -> None:
        """After the answer: the update's status notifications, ``STEP_S`` simulated
        seconds apart (:func:`firmware_plan`: seeded failures by the location), then,
        once installed, a reboot that boots with the new firmware version."""
        plan = firmware_plan(location, self.station.cp_id, v201="request_id" in fields)

        async def update() -> None:
            for status in plan.steps:
                await self.station.sleep(STEP_S)
                await self.station.send(notification(status=status, **fields))
            if plan.version is not None:
                self.state.firmware_version = plan.version
                await self.station.reboot()

        self.after_answer(update)

    def send_upload_steps(self, notification: Callable[..., Any], **fields: Any) -> None:
        """Send an upload's (diagnostics, log) status notifications after the answer."""
        self.send_after_answer([notification(status=s, **fields) for s in _UPLOAD_STEPS])

    def composite_schedule(self, cid: int, unit: str | None) -> tuple[str, float] | None:
        """(unit, limit) in force on connector ``cid`` (0: the station); None for a
        connector the station does not have."""
        if cid != 0 and cid not in self.state.connectors:
            return None
        # The composite schedule is what is installed: the EV's reaction delay is physics.
        at = self.station.now() + timedelta(seconds=self.state.reaction_s)
        return self.state.composite_limit(cid, unit, self.station.rating, at)

    def send_local_list(
        self, version: int, update_type: str, entries: dict[str, str | None], enabled: str
    ) -> str:
        full = update_type == "Full"
        return self.state.update_local_list(version, full, entries, enabled.lower() == "true")

    @staticmethod
    def clear_cache(enabled: str) -> str:
        """Accepted, or Rejected when the station keeps no authorisation cache."""
        return "Accepted" if enabled.lower() == "true" else "Rejected"

    @staticmethod
    def upload_location_status(location: str) -> str:
        """Accepted for a scheme the station uploads to (ftp, http and their TLS forms)."""
        scheme = location.partition("://")[0].lower()
        return "Accepted" if scheme in ("ftp", "ftps", "http", "https") else "Rejected"

    def cancel_reservation(self, reservation_id: int) -> str:
        return "Accepted" if self.state.cancel_reservation(reservation_id) else "Rejected"

    @staticmethod
    def data_transfer(vendor_id: str) -> str:
        return "Accepted" if vendor_id == "org.chargeflow" else "UnknownVendorId"

    async def route_message(self, raw_msg: str | bytes) -> None:
        """A CALL is recorded and shown to the behaviours before the library sees it
        (so a behaviour can leave it unanswered); everything else is the library's."""
        try:
            call = unpack(raw_msg) if _is_call(raw_msg) else None
        except OCPPError:
            call = None  # the library logs it
        if not isinstance(call, Call):
            await super().route_message(raw_msg)
            return
        self.state.received.append((call.action, call.payload))
        verdict = self.behaviours.on_call(call.action, call.payload)
        if isinstance(verdict, Ignore):
            return
        if isinstance(verdict, Reply):
            await self.connection.send(call.create_call_result(verdict.payload).to_json())
            return
        if isinstance(verdict, Fail):
            await self.connection.send(call.create_call_error(verdict.error).to_json())
            return
        self._after.clear()
        await super().route_message(raw_msg)  # the library validates, dispatches, answers
        effects, self._after = self._after, []
        for effect in effects:
            self.station.spawn(effect())
