"""Firmware facts the gateway stores and the API draws: every FirmwareStatusNotification
(``firmware_statuses``, migration 0027) and the 2.0.1 UpdateFirmware ``requestId``
sequence. The rollouts' own tables are in :mod:`store.firmware_rollouts`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from store.db import AsyncDb, execute


@dataclass(frozen=True, slots=True)
class FirmwareStatus:
    charge_point_id: str
    status: str  # as sent: Downloading, Downloaded, SignatureVerified, Installing, ...
    request_id: int | None  # 2.0.1 requestId; None for 1.6
    received_at: datetime


async def record_status(db: AsyncDb, status: FirmwareStatus) -> None:
    await execute(
        db,
        "INSERT INTO firmware_statuses (charge_point_id, status, request_id, received_at) "
        "VALUES (%s, %s, %s, %s)",
        (status.charge_point_id, status.status, status.request_id, status.received_at),
    )


async def statuses_since(
    db: AsyncDb, charge_point_ids: list[str], since: datetime
) -> list[FirmwareStatus]:
    """The stations' notifications received at or after ``since``, oldest first."""
    rows = await execute(
        db,
        "SELECT charge_point_id, status, request_id, received_at FROM firmware_statuses "
        "WHERE charge_point_id = ANY(%s) AND received_at >= %s "
        "ORDER BY received_at, status_id",
        (charge_point_ids, since),
    )
    return [FirmwareStatus(str(r[0]), str(r[1]), r[2], r[3]) for r in rows]
