"""``chargeflow dashboards publish``: the folder, the datasource and the dashboards into
a running Grafana through its HTTP API (``grafana-client``), create-or-update:

* the folder is looked up with ``GET /api/search?type=dash-folder`` (then by uid, for a
  renamed one) and created (``POST /api/folders``) only when no folder has its uid;
* the datasource by uid (``GET /api/datasources/uid/<uid>``): created when missing,
  updated (``PUT``) when it differs; a datasource of the same name under another uid is
  refused, since the dashboards refer to the uid;
* each dashboard is looked up with ``GET /api/search?type=dash-db&dashboardUIDs=<uid>``
  and, when found, read (``GET /api/dashboards/uid/<uid>``): posted (``POST
  /api/dashboards/db``, overwrite) only when new, changed or in another folder.

A second publish of the same build therefore writes nothing. The token goes into the
``Authorization`` header only; nothing here logs it or puts it into an error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards.catalog import DEFAULT_CURRENCIES, dashboards
from dashboards.common import Flavour
from dashboards.provisioning import datasource_body, provider

log = structlog.get_logger("dashboards.publish")

# Fields Grafana adds to a stored dashboard or datasource that a build does not have.
_SERVER_FIELDS = ("id", "version")
_DATASOURCE_COMPARED = ("name", "type", "url", "user", "access", "isDefault", "jsonData")


class PublishError(RuntimeError):
    """Grafana refused a step (the message names the step and Grafana's status)."""


@dataclass
class PublishReport:
    folder: str = "unchanged"
    datasource: str = "skipped"
    dashboards: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [
            f"folder: {self.folder}",
            f"datasource: {self.datasource}",
            *(f"dashboard {uid}: {what}" for uid, what in self.dashboards.items()),
        ]


def _step(what: str, exc: GrafanaException) -> PublishError:
    return PublishError(f"{what}: Grafana answered {exc.status_code or 'no response'}")


def _folder_exists(api: GrafanaApi, uid: str) -> bool:
    """The folder by uid (renamed in Grafana, the title search misses it)."""
    try:
        api.folder.get_folder(uid)
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return False
        raise
    return True


def _folder(api: GrafanaApi, report: PublishReport) -> str:
    entry = provider()
    uid, title = str(entry["folderUid"]), str(entry["folder"])
    try:
        hits = api.search.search_dashboards(type_="dash-folder", query=title)
        if not any(hit.get("uid") == uid for hit in hits) and not _folder_exists(api, uid):
            api.folder.create_folder(title, uid=uid)
            report.folder = "created"
    except GrafanaException as exc:
        raise _step(f"folder {uid}", exc) from None
    return uid


def _same_datasource(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    if "secureJsonData" in wanted:  # Grafana never returns secrets: always re-send them
        return False
    return all(current.get(k) == wanted.get(k) for k in _DATASOURCE_COMPARED)


def _datasource(api: GrafanaApi, body: dict[str, Any], report: PublishReport) -> None:
    uid, name = body["uid"], body["name"]
    try:
        try:
            current = api.datasource.get_datasource_by_uid(uid)
        except GrafanaClientError as exc:
            if exc.status_code != 404:
                raise
            current = None
        if current is None:
            try:
                other = api.datasource.get_datasource_by_name(name)
            except GrafanaClientError as exc:
                if exc.status_code != 404:
                    raise
                other = None
            if other is not None:
                raise PublishError(
                    f"a datasource named {name!r} exists with uid {other.get('uid')!r};"
                    f" the dashboards need uid {uid!r}: rename or remove it"
                )
            api.datasource.create_datasource(body)
            report.datasource = "created"
        elif _same_datasource(current, body):
            report.datasource = "unchanged"
        else:
            api.datasource.update_datasource_by_uid(uid, {**body, "id": current.get("id")})
            report.datasource = "updated"
    except GrafanaException as exc:
        raise _step(f"datasource {uid}", exc) from None


def _stored(api: GrafanaApi, uid: str) -> dict[str, Any] | None:
    hits = api.search.search_dashboards(type_="dash-db", dashboard_uids=[uid])
    if not any(hit.get("uid") == uid for hit in hits):
        return None
    found: dict[str, Any] = api.dashboard.get_dashboard(uid)
    return found


def _comparable(board: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in board.items() if k not in _SERVER_FIELDS}


def _dashboard(api: GrafanaApi, board: dict[str, Any], folder: str, report: PublishReport) -> None:
    uid = board["uid"]
    try:
        stored = _stored(api, uid)
        if stored is not None:
            same_folder = stored.get("meta", {}).get("folderUid") == folder
            if same_folder and _comparable(stored.get("dashboard", {})) == _comparable(board):
                report.dashboards[uid] = "unchanged"
                return
        api.dashboard.update_dashboard(
            {
                "dashboard": {**board, "id": None},
                "folderUid": folder,
                "overwrite": True,
                "message": "chargeflow dashboards publish",
            }
        )
        report.dashboards[uid] = "created" if stored is None else "updated"
    except GrafanaException as exc:
        raise _step(f"dashboard {uid}", exc) from None


def publish(
    url: str,
    token: str,
    *,
    env: Mapping[str, str] | None,
    flavour: Flavour | None = None,
    currencies: Sequence[str] = DEFAULT_CURRENCIES,
    timeout_s: float = 30.0,
) -> PublishReport:
    """Publish to the Grafana at ``url`` with the service account ``token``. ``env``:
    where the datasource's connection comes from (``CHARGEFLOW_GRAFANA_DB_*``); None
    leaves the datasource alone (provisioned by file)."""
    body = None if env is None else datasource_body(env)
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout_s)
    report = PublishReport()
    folder = _folder(api, report)
    if body is not None:
        _datasource(api, body, report)
    for board in dashboards(flavour, currencies):
        _dashboard(api, board, folder, report)
    log.info("dashboards published", folder=report.folder, dashboards=len(report.dashboards))
    return report
