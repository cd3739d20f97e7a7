"""The typed update-firmware body as the OCPP request of the station's version (pure).
``request_id`` is the 2.0.1 ``requestId`` the caller drew (sequence
``firmware_request_ids``); ignored for 1.6, whose UpdateFirmware has none.

>>> from datetime import UTC, datetime
>>> t = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)
>>> body = UpdateFirmwareCreate(location="https://fw.example/a.bin", retrieve_date=t, retries=2)
>>> action, payload = update_firmware_request(body, "1.6")
>>> action, sorted(payload.items())
('UpdateFirmware', [('location', 'https://fw.example/a.bin'), ('retries', 2), \
('retrieveDate', '2026-12-07T02:00:00.000Z')])
>>> update_firmware_request(body, "2.0.1", request_id=9)[1]["firmware"]["retrieveDateTime"]
'2026-12-07T02:00:00.000Z'
>>> try:
...     update_firmware_request(body.model_copy(update={"signature": "c2ln"}), "1.6")
... except NotExpressible as exc:
...     print(exc)
OCPP 1.6 UpdateFirmware has no signature (use a 2.0.1 station or the raw SignedUpdateFirmware)
"""

from __future__ import annotations

from typing import Any

from api.command_actions import NotExpressible
from api.schemas.firmware import UpdateFirmwareCreate
from bus.times import format_rfc3339

ACTION = "UpdateFirmware"


def update_firmware_request(
    body: UpdateFirmwareCreate, ocpp_version: str, *, request_id: int | None = None
) -> tuple[str, dict[str, Any]]:
    """(action, payload); ``body.retrieve_date`` must be set (the caller fills in now)."""
    assert body.retrieve_date is not None, "the caller sets the retrieve date"
    retrieve = format_rfc3339(body.retrieve_date)
    retry: dict[str, Any] = {}
    if body.retries is not None:
        retry["retries"] = body.retries
    if body.retry_interval is not None:
        retry["retryInterval"] = body.retry_interval
    if ocpp_version == "1.6":
        for name, value in (
            ("installDateTime", body.install_date),
            ("signingCertificate", body.signing_certificate),
            ("signature", body.signature),
        ):
            if value is not None:
                raise NotExpressible(
                    f"OCPP 1.6 UpdateFirmware has no {name} (use a 2.0.1 station or the "
                    "raw SignedUpdateFirmware)"
                )
        return ACTION, {"location": body.location, "retrieveDate": retrieve, **retry}
    assert request_id is not None, "a 2.0.1 UpdateFirmware needs its requestId"
    firmware: dict[str, Any] = {"location": body.location, "retrieveDateTime": retrieve}
    if body.install_date is not None:
        firmware["installDateTime"] = format_rfc3339(body.install_date)
    if body.signing_certificate is not None:
        firmware["signingCertificate"] = body.signing_certificate
    if body.signature is not None:
        firmware["signature"] = body.signature
    return ACTION, {"requestId": request_id, "firmware": firmware, **retry}
