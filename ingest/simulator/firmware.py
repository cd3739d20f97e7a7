"""What a simulated station does with an UpdateFirmware (pure): the status notifications
it sends, in order, and the firmware version it boots with afterwards (None: the update
failed, it keeps the old one).

The version is the location's file name without its extension (``.../sim-2.0.0.bin`` ->
``sim-2.0.0``). Failures are seeded by the location, so a test (or a rollout) chooses
them: the query parameter ``download_fail`` / ``install_fail`` lists the charge point
ids that fail (comma separated, ``*`` = every station), e.g.
``https://fw.example/sim-2.bin?install_fail=CP-2,CP-5``. 2.0.1 stations verify the
signature after downloading (SignatureVerified); 1.6 has no such status.

>>> firmware_plan("https://fw.example/sim-2.0.0.bin", "CP-1", v201=True)
FirmwarePlan(steps=('Downloading', 'Downloaded', 'SignatureVerified', 'Installing', \
'Installed'), version='sim-2.0.0')
>>> firmware_plan("https://fw.example/a.bin?install_fail=CP-1,CP-3", "CP-1", v201=False)
FirmwarePlan(steps=('Downloading', 'Downloaded', 'Installing', 'InstallationFailed'), \
version=None)
>>> firmware_plan("https://fw.example/a.bin?download_fail=*", "CP-9", v201=False).steps
('Downloading', 'DownloadFailed')
>>> firmware_plan("https://fw.example/a.bin?install_fail=CP-3", "CP-1", v201=False).version
'a'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import parse_qs, urlsplit

# Simulated seconds between two notifications (download, verify, install).
STEP_S = 30.0


@dataclass(frozen=True, slots=True)
class FirmwarePlan:
    steps: tuple[str, ...]
    version: str | None


def _fails(query: dict[str, list[str]], name: str, cp_id: str) -> bool:
    listed = {cp.strip() for value in query.get(name, []) for cp in value.split(",")}
    return "*" in listed or cp_id in listed


def firmware_plan(location: str, cp_id: str, *, v201: bool) -> FirmwarePlan:
    url = urlsplit(location)
    query = parse_qs(url.query)
    if _fails(query, "download_fail", cp_id):
        return FirmwarePlan(("Downloading", "DownloadFailed"), None)
    downloaded = ("Downloading", "Downloaded", *(("SignatureVerified",) if v201 else ()))
    if _fails(query, "install_fail", cp_id):
        return FirmwarePlan((*downloaded, "Installing", "InstallationFailed"), None)
    version = (PurePosixPath(url.path).stem or "updated")[:50]  # CiString50 in both
    return FirmwarePlan((*downloaded, "Installing", "Installed"), version)
