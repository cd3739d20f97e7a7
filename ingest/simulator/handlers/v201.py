"""OCPP 2.0.1 commands from the CSMS (what each does: ``handlers``). One connector
per EVSE: the connector id of the simulation is the EVSE id."""

from __future__ import annotations

from typing import Any

from ocpp.routing import on
from ocpp.v201 import ChargePoint
from ocpp.v201 import call as c
from ocpp.v201 import call_result as r
from ocpp.v201.enums import Action

from bus.times import format_rfc3339
from ingest.simulator.charging_profiles import InstalledProfile
from ingest.simulator.handlers.client import ProfileOf, StationClient
from ingest.simulator.state import Setting


class V201ChargePoint(StationClient, ChargePoint):
    idle_notifications = {
        "FirmwareStatusNotification": c.FirmwareStatusNotification,
        "LogStatusNotification": c.LogStatusNotification,
    }

    def profile_of(self, profile: dict[str, Any]) -> ProfileOf:
        def of(cid: int, purpose: str) -> InstalledProfile:
            schedule = profile["charging_schedule"][0]
            return self.installed(profile, schedule, int(profile["id"]), cid, purpose)

        return of

    # ---------------------------------------------------------------- sessions

    @on(Action.request_start_transaction)
    def on_request_start(
        self,
        id_token: dict[str, Any],
        evse_id: int | None = None,
        charging_profile: dict[str, Any] | None = None,
        remote_start_id: int | None = None,
        **_: Any,
    ) -> r.RequestStartTransaction:
        setting = self.state.variables[("AuthCtrlr", "AuthorizeRemoteStart")]
        id_tag = str(id_token["id_token"])
        status = self.remote_start(
            evse_id, id_tag, setting.value.lower() == "true", charging_profile, remote_start_id
        )
        return r.RequestStartTransaction(status=status)

    @on(Action.request_stop_transaction)
    def on_request_stop(self, transaction_id: str, **_: Any) -> r.RequestStopTransaction:
        return r.RequestStopTransaction(status=self.remote_stop(transaction_id))

    @on(Action.reset)
    def on_reset(self, type: str, **_: Any) -> r.Reset:
        if type == "OnIdle" and self.state.running:
            return r.Reset(status="Scheduled")
        self.reboot_after_answer("ImmediateReset")
        return r.Reset(status="Accepted")

    @on(Action.unlock_connector)
    def on_unlock(self, evse_id: int, connector_id: int, **_: Any) -> r.UnlockConnector:
        if evse_id not in self.state.connectors or connector_id != 1:
            return r.UnlockConnector(status="UnknownConnector")
        if evse_id in self.state.running:
            return r.UnlockConnector(status="OngoingAuthorizedTransaction")
        return r.UnlockConnector(status="Unlocked")

    @on(Action.change_availability)
    def on_change_availability(
        self, operational_status: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> r.ChangeAvailability:
        cids = [int(evse["id"])] if evse else list(self.state.connectors)
        if any(cid not in self.state.connectors for cid in cids):
            return r.ChangeAvailability(status="Rejected")
        operative = operational_status == "Operative"
        return r.ChangeAvailability(status=self.change_availability(cids, operative))

    # --------------------------------------------------------------- variables

    def _variables(
        self, items: list[dict[str, Any]]
    ) -> list[tuple[Setting | None, dict[str, Any]]]:
        """Each item's variable (None when unknown) and the result that names it."""
        found = []
        for item in items:
            setting, status = self.state.variable(
                item["component"]["name"], item["variable"]["name"]
            )
            result = {
                "attribute_status": status,
                "component": item["component"],
                "variable": item["variable"],
            }
            found.append((setting, result))
        return found

    @on(Action.set_variables)
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> r.SetVariables:
        found = self._variables(set_variable_data)
        for item, (setting, result) in zip(set_variable_data, found, strict=True):
            if setting is not None and setting.read_only:
                result["attribute_status"] = "Rejected"
            elif setting is not None:
                setting.value = str(item["attribute_value"])
        return r.SetVariables(set_variable_result=[result for _, result in found])

    @on(Action.get_variables)
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> r.GetVariables:
        found = self._variables(get_variable_data)
        for setting, result in found:
            if setting is not None:
                result["attribute_value"] = setting.value
        return r.GetVariables(get_variable_result=[result for _, result in found])

    @on(Action.get_base_report)
    def on_get_base_report(self, request_id: int, **_: Any) -> r.GetBaseReport:
        data = [
            {
                "component": {"name": component},
                "variable": {"name": variable},
                "variable_attribute": [
                    {
                        "value": setting.value,
                        "mutability": "ReadOnly" if setting.read_only else "ReadWrite",
                    }
                ],
            }
            for (component, variable), setting in self.state.variables.items()
        ]
        report = c.NotifyReport(
            request_id=request_id,
            generated_at=format_rfc3339(self.station.now()),
            seq_no=0,
            tbc=False,
            report_data=data,
        )
        self.send_after_answer([report])
        return r.GetBaseReport(status="Accepted")

    # ---------------------------------------------------------- smart charging

    @on(Action.set_charging_profile)
    def on_set_charging_profile(
        self, evse_id: int, charging_profile: dict[str, Any], **_: Any
    ) -> r.SetChargingProfile:
        return r.SetChargingProfile(status=self.set_profile(evse_id, charging_profile))

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(
        self,
        charging_profile_id: int | None = None,
        charging_profile_criteria: dict[str, Any] | None = None,
        **_: Any,
    ) -> r.ClearChargingProfile:
        criteria = charging_profile_criteria or {}
        ok = self.state.clear_profiles(
            charging_profile_id,
            criteria.get("evse_id"),
            criteria.get("charging_profile_purpose"),
            criteria.get("stack_level"),
        )
        return r.ClearChargingProfile(status="Accepted" if ok else "Unknown")

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(
        self, duration: int, evse_id: int, charging_rate_unit: str | None = None, **_: Any
    ) -> r.GetCompositeSchedule:
        found = self.composite_schedule(evse_id, charging_rate_unit)
        if found is None:
            return r.GetCompositeSchedule(status="Rejected")
        unit, limit = found
        return r.GetCompositeSchedule(
            status="Accepted",
            schedule={
                "evse_id": evse_id,
                "duration": duration,
                "schedule_start": format_rfc3339(self.station.now()),
                "charging_rate_unit": unit,
                "charging_schedule_period": [{"start_period": 0, "limit": limit}],
            },
        )

    # ---------------------------------------------------------------- messages

    @on(Action.trigger_message)
    def on_trigger_message(
        self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any
    ) -> r.TriggerMessage:
        cids = [int(evse["id"])] if evse else list(self.state.connectors)
        return r.TriggerMessage(status=self.trigger(requested_message, cids))

    @on(Action.update_firmware)
    def on_update_firmware(
        self, request_id: int, firmware: dict[str, Any], **_: Any
    ) -> r.UpdateFirmware:
        self.update_firmware(
            str(firmware["location"]), c.FirmwareStatusNotification, request_id=request_id
        )
        return r.UpdateFirmware(status="Accepted")

    @on(Action.get_log)
    def on_get_log(self, request_id: int, log: dict[str, Any], **_: Any) -> r.GetLog:
        if self.upload_location_status(str(log["remote_location"])) != "Accepted":
            return r.GetLog(status="Rejected")
        self.send_upload_steps(c.LogStatusNotification, request_id=request_id)
        return r.GetLog(status="Accepted", filename=f"{self.station.cp_id}-log.txt")

    # --------------------------------------------- local list, reservations...

    @on(Action.send_local_list)
    def on_send_local_list(
        self,
        version_number: int,
        update_type: str,
        local_authorization_list: list[dict[str, Any]] | None = None,
        **_: Any,
    ) -> r.SendLocalList:
        entries = {
            str(e["id_token"]["id_token"]): (e.get("id_token_info") or {}).get("status")
            for e in local_authorization_list or []
        }
        enabled = self.state.variables[("LocalAuthListCtrlr", "Enabled")].value
        return r.SendLocalList(
            status=self.send_local_list(version_number, update_type, entries, enabled)
        )

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **_: Any) -> r.GetLocalListVersion:
        return r.GetLocalListVersion(version_number=self.state.local_list_version)

    @on(Action.reserve_now)
    def on_reserve_now(self, id: int, evse_id: int | None = None, **_: Any) -> r.ReserveNow:
        return r.ReserveNow(status=self.state.reserve(id, evse_id))

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, reservation_id: int, **_: Any) -> r.CancelReservation:
        return r.CancelReservation(status=self.cancel_reservation(reservation_id))

    @on(Action.clear_cache)
    def on_clear_cache(self, **_: Any) -> r.ClearCache:
        enabled = self.state.variables[("AuthCacheCtrlr", "Enabled")].value
        return r.ClearCache(status=self.clear_cache(enabled))

    @on(Action.data_transfer)
    def on_data_transfer(self, vendor_id: str, **_: Any) -> r.DataTransfer:
        return r.DataTransfer(status=self.data_transfer(vendor_id))
