"""OCPP 1.6 commands from the central system (what each does: ``handlers``)."""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint
from ocpp.v16 import call as c
from ocpp.v16 import call_result as r
from ocpp.v16.enums import Action

from bus.times import format_rfc3339
from ingest.simulator.charging_profiles import InstalledProfile
from ingest.simulator.handlers.client import ProfileOf, StationClient


class V16ChargePoint(StationClient, ChargePoint):
    idle_notifications = {
        "DiagnosticsStatusNotification": c.DiagnosticsStatusNotification,
        "FirmwareStatusNotification": c.FirmwareStatusNotification,
    }
    replaces_same_slot = True

    def profile_of(self, profile: dict[str, Any]) -> ProfileOf:
        def of(cid: int, purpose: str) -> InstalledProfile:
            schedule = profile["charging_schedule"]
            return self.installed(
                profile, schedule, int(profile["charging_profile_id"]), cid, purpose
            )

        return of

    # ---------------------------------------------------------------- sessions

    @on(Action.remote_start_transaction)
    def on_remote_start(
        self,
        id_tag: str,
        connector_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        **_: Any,
    ) -> r.RemoteStartTransaction:
        setting = self.state.configuration["AuthorizeRemoteTxRequests"]
        status = self.remote_start(
            connector_id, id_tag, setting.value.lower() == "true", charging_profile
        )
        return r.RemoteStartTransaction(status=status)

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int, **_: Any) -> r.RemoteStopTransaction:
        return r.RemoteStopTransaction(status=self.remote_stop(transaction_id))

    @on(Action.reset)
    def on_reset(self, type: str, **_: Any) -> r.Reset:
        self.reboot_after_answer(f"{type}Reset")
        return r.Reset(status="Accepted")

    @on(Action.unlock_connector)
    def on_unlock(self, connector_id: int, **_: Any) -> r.UnlockConnector:
        if connector_id not in self.state.connectors:
            return r.UnlockConnector(status="NotSupported")
        if connector_id in self.state.running:
            self.station.stop_session(connector_id, "UnlockCommand")
        return r.UnlockConnector(status="Unlocked")

    @on(Action.change_availability)
    def on_change_availability(
        self, connector_id: int, type: str, **_: Any
    ) -> r.ChangeAvailability:
        if connector_id != 0 and connector_id not in self.state.connectors:
            return r.ChangeAvailability(status="Rejected")
        cids = list(self.state.connectors) if connector_id == 0 else [connector_id]
        return r.ChangeAvailability(status=self.change_availability(cids, type == "Operative"))

    # ----------------------------------------------------------- configuration

    @on(Action.change_configuration)
    def on_change_configuration(self, key: str, value: str, **_: Any) -> r.ChangeConfiguration:
        setting = self.state.configuration.get(key)
        if setting is None:
            return r.ChangeConfiguration(status="NotSupported")
        if setting.read_only:
            return r.ChangeConfiguration(status="Rejected")
        setting.value = str(value)
        return r.ChangeConfiguration(status="Accepted")

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> r.GetConfiguration:
        config = self.state.configuration
        keys = key or list(config)
        known = [
            {"key": k, "readonly": config[k].read_only, "value": config[k].value}
            for k in keys
            if k in config
        ]
        unknown = [k for k in keys if k not in config]
        return r.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    # ---------------------------------------------------------- smart charging

    @on(Action.set_charging_profile)
    def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any], **_: Any
    ) -> r.SetChargingProfile:
        return r.SetChargingProfile(status=self.set_profile(connector_id, cs_charging_profiles))

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(
        self,
        id: int | None = None,
        connector_id: int | None = None,
        charging_profile_purpose: str | None = None,
        stack_level: int | None = None,
        **_: Any,
    ) -> r.ClearChargingProfile:
        ok = self.state.clear_profiles(id, connector_id, charging_profile_purpose, stack_level)
        return r.ClearChargingProfile(status="Accepted" if ok else "Unknown")

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, connector_id: int, duration: int, charging_rate_unit: str | None = None, **_: Any
    ) -> r.GetCompositeSchedule:
        found = self.composite_schedule(connector_id, charging_rate_unit)
        if found is None:
            return r.GetCompositeSchedule(status="Rejected")
        unit, limit = found
        return r.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=format_rfc3339(self.station.now()),
            charging_schedule={
                "duration": duration,
                "charging_rate_unit": unit,
                "charging_schedule_period": [{"start_period": 0, "limit": limit}],
            },
        )

    # ---------------------------------------------------------------- messages

    @on(Action.trigger_message)
    def on_trigger_message(
        self, requested_message: str, connector_id: int | None = None, **_: Any
    ) -> r.TriggerMessage:
        cids = [connector_id] if connector_id else list(self.state.connectors)
        return r.TriggerMessage(status=self.trigger(requested_message, cids))

    @on(Action.update_firmware)
    def on_update_firmware(self, location: str, **_: Any) -> r.UpdateFirmware:
        self.update_firmware(location, c.FirmwareStatusNotification)
        return r.UpdateFirmware()

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, location: str, **_: Any) -> r.GetDiagnostics:
        if self.upload_location_status(location) != "Accepted":
            return r.GetDiagnostics()  # no file to upload there
        self.send_upload_steps(c.DiagnosticsStatusNotification)
        return r.GetDiagnostics(file_name=f"{self.station.cp_id}-diagnostics.log")

    # --------------------------------------------- local list, reservations...

    @on(Action.send_local_list)
    def on_send_local_list(
        self,
        list_version: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> r.SendLocalList:
        entries = {
            str(e["id_tag"]): (e.get("id_tag_info") or {}).get("status")
            for e in local_authorization_list or []
        }
        enabled = self.state.configuration["LocalAuthListEnabled"].value
        return r.SendLocalList(
            status=self.send_local_list(list_version, update_type, entries, enabled)
        )

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **_: Any) -> r.GetLocalListVersion:
        return r.GetLocalListVersion(list_version=self.state.local_list_version)

    @on(Action.reserve_now)
    def on_reserve_now(self, reservation_id: int, connector_id: int, **_: Any) -> r.ReserveNow:
        return r.ReserveNow(status=self.state.reserve(reservation_id, connector_id))

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> r.CancelReservation:
        return r.CancelReservation(status=self.cancel_reservation(reservation_id))

    @on(Action.clear_cache)
    def on_clear_cache(self, **_: Any) -> r.ClearCache:
        enabled = self.state.configuration["AuthorizationCacheEnabled"].value
        return r.ClearCache(status=self.clear_cache(enabled))

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> r.DataTransfer:
        return r.DataTransfer(status=self.data_transfer(vendor_id))
