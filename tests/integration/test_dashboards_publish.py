"""``chargeflow dashboards publish`` against a local server implementing the Grafana
endpoints it calls (tests/support/fake_grafana.py), over real HTTP with grafana-client:
the requests (token header, bodies), create-or-update, a second publish that writes no
folder or dashboard, a dashboard edited in Grafana put back, and errors that never show
the token."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from chargeflow.cli import app
from dashboards.catalog import dashboards
from dashboards.provisioning import DB_ENV
from dashboards.publish import PublishError, publish
from tests.support.fake_grafana import FakeGrafana, fake_grafana

pytestmark = pytest.mark.integration

TOKEN = "glsa_s3cretServiceAccountToken_0123456789"
DB_PASSWORD = "grafana-db-pw-7731"
ENV = {
    "CHARGEFLOW_GRAFANA_DB_HOST": "timescaledb",
    "CHARGEFLOW_GRAFANA_DB_PORT": "5432",
    "CHARGEFLOW_GRAFANA_DB_NAME": "chargeflow",
    "CHARGEFLOW_GRAFANA_DB_USER": "grafana_reader",
    "CHARGEFLOW_GRAFANA_DB_PASSWORD": DB_PASSWORD,
    "CHARGEFLOW_GRAFANA_DB_SSLMODE": "disable",
}
UIDS = ["chargeflow-operations", "chargeflow-maintenance", "chargeflow-billing-eur"]


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    yield from fake_grafana(TOKEN)


def test_first_publish_creates_folder_datasource_and_dashboards(grafana: FakeGrafana) -> None:
    assert set(ENV) == set(DB_ENV)
    report = publish(grafana.url, TOKEN, env=ENV)
    assert report.folder == "created"
    assert report.datasource == "created"
    assert report.dashboards == dict.fromkeys(UIDS, "created")
    assert {r.headers["authorization"] for r in grafana.requests} == {f"Bearer {TOKEN}"}

    writes = [(r.method, r.path) for r in grafana.writes()]
    assert writes == [
        ("POST", "/api/folders"),
        ("POST", "/api/datasources"),
        *[("POST", "/api/dashboards/db")] * 3,
    ]
    folder, datasource, *boards = [r.body for r in grafana.writes()]
    assert folder == {"title": "chargeflow", "uid": "chargeflow"}
    assert datasource["uid"] == "chargeflow-db"
    assert datasource["type"] == "grafana-postgresql-datasource"
    assert datasource["url"] == "timescaledb:5432"
    assert datasource["user"] == "grafana_reader"
    assert datasource["jsonData"]["database"] == "chargeflow"
    assert datasource["jsonData"]["timescaledb"] is True
    assert datasource["secureJsonData"] == {"password": DB_PASSWORD}
    built = {b["uid"]: b for b in dashboards()}
    for body in boards:
        assert body["folderUid"] == "chargeflow"
        assert body["overwrite"] is True
        board = body["dashboard"]
        assert board["id"] is None
        assert {k: v for k, v in board.items() if k != "id"} == built[board["uid"]]
    # the lookups went through /api/search first
    searches = [r.query["type"][0] for r in grafana.requests if r.path == "/api/search"]
    assert searches == ["dash-folder", "dash-db", "dash-db", "dash-db"]


def test_a_second_publish_writes_no_folder_or_dashboard(grafana: FakeGrafana) -> None:
    publish(grafana.url, TOKEN, env=ENV)
    versions = {uid: d["dashboard"]["version"] for uid, d in grafana.dashboards.items()}
    first = len(grafana.requests)

    again = publish(grafana.url, TOKEN, env=ENV)
    assert again.folder == "unchanged"
    assert again.dashboards == dict.fromkeys(UIDS, "unchanged")
    # Grafana never returns the password, so the datasource is sent again, unchanged
    assert again.datasource == "updated"
    second = grafana.requests[first:]
    assert [(r.method, r.path) for r in second if r.method != "GET"] == [
        ("PUT", "/api/datasources/uid/chargeflow-db")
    ]
    assert len(grafana.folders) == 1
    assert len(grafana.datasources) == 1
    assert {uid: d["dashboard"]["version"] for uid, d in grafana.dashboards.items()} == versions

    # without the datasource (provisioned by file) nothing at all is written
    third = len(grafana.requests)
    report = publish(grafana.url, TOKEN, env=None)
    assert report.datasource == "skipped"
    assert [r for r in grafana.requests[third:] if r.method != "GET"] == []


def test_a_dashboard_edited_in_grafana_is_put_back(grafana: FakeGrafana) -> None:
    publish(grafana.url, TOKEN, env=None)
    grafana.dashboards["chargeflow-maintenance"]["dashboard"]["title"] = "edited by hand"
    report = publish(grafana.url, TOKEN, env=None)
    assert report.dashboards == {
        "chargeflow-operations": "unchanged",
        "chargeflow-maintenance": "updated",
        "chargeflow-billing-eur": "unchanged",
    }
    stored = grafana.dashboards["chargeflow-maintenance"]["dashboard"]
    assert stored["title"] == "chargeflow: Maintenance"
    assert stored["version"] == 2


def test_a_folder_renamed_in_grafana_is_found_by_its_uid(grafana: FakeGrafana) -> None:
    publish(grafana.url, TOKEN, env=None)
    grafana.folders["chargeflow"]["title"] = "EV charging"
    report = publish(grafana.url, TOKEN, env=None)
    assert report.folder == "unchanged"
    assert list(grafana.folders) == ["chargeflow"]
    assert [r for r in grafana.writes() if r.path == "/api/folders"][1:] == []


def test_a_datasource_of_the_same_name_under_another_uid_is_refused(
    grafana: FakeGrafana,
) -> None:
    grafana.datasources["other"] = {"uid": "other", "name": "chargeflow", "id": 99}
    with pytest.raises(PublishError, match="uid 'other'"):
        publish(grafana.url, TOKEN, env=ENV)
    assert [r.path for r in grafana.writes()] == ["/api/folders"]


def test_the_cli_reports_each_step_and_never_shows_the_token(grafana: FakeGrafana) -> None:
    runner = CliRunner()
    env = {**ENV, "CHARGEFLOW_GRAFANA_TOKEN": TOKEN}
    ok = runner.invoke(app, ["dashboards", "publish", "--url", grafana.url], env=env)
    assert ok.exit_code == 0, ok.output
    assert "dashboard chargeflow-operations: created" in ok.output
    assert TOKEN not in ok.output
    assert DB_PASSWORD not in ok.output

    wrong = runner.invoke(
        app, ["dashboards", "publish", "--url", grafana.url, "--token", TOKEN + "x"], env=ENV
    )
    assert wrong.exit_code == 1
    assert "Grafana answered 401" in wrong.output
    assert TOKEN not in wrong.output

    missing = runner.invoke(
        app,
        ["dashboards", "publish", "--url", grafana.url, "--token", TOKEN],
        env={k: v for k, v in ENV.items() if k != "CHARGEFLOW_GRAFANA_DB_USER"},
    )
    assert missing.exit_code == 1
    assert "CHARGEFLOW_GRAFANA_DB_USER" in missing.output
    assert DB_PASSWORD not in missing.output
    assert TOKEN not in json.dumps([r.body for r in grafana.requests])
