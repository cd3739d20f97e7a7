"""The dashboards as Grafana's JSON: valid against Grafana's dashboard and panel JSON
schemas (tests/data/grafana-jsonschema), unique panel ids on the grid, datasource and
variable references that resolve, units and refresh, both SQL flavours, the
provisioning files and the export command."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pglast
import pytest
from typer.testing import CliRunner

from chargeflow.cli import app
from dashboards.catalog import dashboards
from dashboards.common import ALL_VALUE, Flavour
from dashboards.macros import TimeRange, Variable, expand
from dashboards.provisioning import (
    DB_ENV,
    ProvisioningError,
    datasource_body,
    datasource_template,
    env_references,
    provider,
)

SCHEMAS = Path(__file__).parents[1] / "data" / "grafana-jsonschema"
BOARDS = dashboards(Flavour(timescale=True), ("EUR", "JPY"))
PLAIN = dashboards(Flavour(timescale=False), ("EUR", "JPY"))
RANGE = TimeRange(datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 7, 8, tzinfo=UTC))
BUILTINS = {"__interval", "__interval_ms"}


def _schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMAS / f"{name}.jsonschema.json").read_text())
    return data


def _dashboard_validator() -> jsonschema.Draft7Validator:
    """Grafana's dashboard schema with two documented relaxations: CUE's ``options?: _``
    (a matcher's options) and ``value?: _`` (an override's value) are "anything" in
    Grafana (``byName`` takes a string, ``unit`` a string), but became ``object`` in the
    generated JSON schema; the foundation SDK's own ``override_by_name`` emits strings."""
    schema = _schema("dashboard")
    schema["definitions"]["MatcherConfig"]["properties"]["options"] = {}
    schema["definitions"]["DynamicConfigValue"]["properties"]["value"] = {}
    return jsonschema.Draft7Validator(schema)


def _any_of(node: Any) -> Any:
    """``oneOf`` as ``anyOf``: the generated panel schemas lost the ``type``
    discriminator of the table's cell options, so one valid value matches several."""
    if isinstance(node, dict):
        return {("anyOf" if k == "oneOf" else k): _any_of(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_any_of(v) for v in node]
    return node


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def _sqls(board: dict[str, Any]) -> list[str]:
    queries = [t["rawSql"] for p in _panels(board) for t in p["targets"]]
    return queries + [v["query"] for v in board["templating"]["list"]]


def _ids(boards: list[dict[str, Any]]) -> list[str]:
    return [b["uid"] for b in boards]


@pytest.mark.parametrize("board", BOARDS + PLAIN, ids=_ids(BOARDS + PLAIN))
def test_each_dashboard_is_valid_against_grafanas_schema(board: dict[str, Any]) -> None:
    errors = list(_dashboard_validator().iter_errors(board))
    assert errors == [], [e.message[:300] for e in errors]


@pytest.mark.parametrize("board", BOARDS, ids=_ids(BOARDS))
def test_each_panels_options_and_field_config_match_its_kinds_schema(
    board: dict[str, Any],
) -> None:
    for panel in _panels(board):
        kind = _any_of(_schema(panel["type"]))
        for part, value in (
            ("Options", panel.get("options")),
            ("FieldConfig", panel.get("fieldConfig", {}).get("defaults", {}).get("custom")),
        ):
            if value is None:
                continue
            schema = {"$ref": f"#/definitions/{part}", "definitions": kind["definitions"]}
            errors = list(jsonschema.Draft7Validator(schema).iter_errors(value))
            assert errors == [], (panel["title"], part, [e.message[:200] for e in errors])


def test_the_schema_check_catches_a_broken_panel() -> None:
    broken = copy.deepcopy(BOARDS[0])
    broken["panels"][1]["gridPos"]["w"] = "wide"
    assert list(_dashboard_validator().iter_errors(broken))
    kind = _any_of(_schema("timeseries"))
    schema = {"$ref": "#/definitions/FieldConfig", "definitions": kind["definitions"]}
    assert list(jsonschema.Draft7Validator(schema).iter_errors({"drawStyle": "zigzag"}))


@pytest.mark.parametrize("board", BOARDS, ids=_ids(BOARDS))
def test_panel_ids_are_unique_and_panels_fit_the_grid_without_overlap(
    board: dict[str, Any],
) -> None:
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine


@pytest.mark.parametrize("board", BOARDS, ids=_ids(BOARDS))
def test_every_datasource_reference_is_the_provisioned_datasource(board: dict[str, Any]) -> None:
    ds = datasource_template()
    refs = [p["datasource"] for p in _panels(board)]
    refs += [t["datasource"] for p in _panels(board) for t in p["targets"]]
    refs += [v["datasource"] for v in board["templating"]["list"]]
    assert refs
    assert all(ref == {"type": ds["type"], "uid": ds["uid"]} for ref in refs)
    for panel in _panels(board):
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids, panel["title"]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["rawQuery"]
            assert target["format"] in ("table", "time_series")


@pytest.mark.parametrize("board", BOARDS, ids=_ids(BOARDS))
def test_every_variable_referenced_is_defined_and_multi_valued_with_all(
    board: dict[str, Any],
) -> None:
    defined = {v["name"]: v for v in board["templating"]["list"]}
    assert set(defined) == {"site", "station"}
    for variable in defined.values():
        assert variable["multi"]
        assert variable["includeAll"]
        assert variable["allValue"] == ALL_VALUE
        assert variable["current"]["value"] == "$__all"
    referenced = set()
    for sql in _sqls(board):
        for a, b in re.findall(r"\$\{(\w+)[^}]*\}|\$(\w+)(?!\w*\()", sql):
            referenced.add(a or b)
    assert referenced - BUILTINS <= set(defined), referenced - BUILTINS - set(defined)
    assert {"site", "station"} <= referenced
    # the station list follows the site selection
    assert "$site" in defined["station"]["query"]


def _units(board: dict[str, Any]) -> set[str]:
    text = json.dumps(board)
    return set(re.findall(r'"unit": "([^"]+)"', text)) | set(
        re.findall(r'"id": "unit", "value": "([^"]+)"', text)
    )


def test_units_refresh_and_time_ranges() -> None:
    operations, maintenance, eur, jpy = BOARDS
    assert {"kW", "percent", "percentunit", "dateTimeFromNow"} <= _units(operations)
    assert "percentunit" in _units(maintenance)
    assert {"kwatth", "currencyEUR"} <= _units(eur)
    assert "currencyJPY" in _units(jpy)
    assert [b["refresh"] for b in BOARDS] == ["30s", "1m", "5m", "5m"]
    assert [b["time"]["from"] for b in BOARDS] == ["now-6h", "now-7d", "now-30d", "now-30d"]
    assert all(b["tags"] == ["chargeflow"] and b["time"]["to"] == "now" for b in BOARDS)
    # the minor units of each currency: EUR cents, JPY none
    assert "/ 100::numeric" in json.dumps(eur)
    assert "/ 1::numeric" in json.dumps(jpy)


def test_the_flavours_use_timescaledb_functions_or_plain_ones() -> None:
    ts, plain = json.dumps(BOARDS), json.dumps(PLAIN)
    assert "time_bucket(" in ts
    assert "last(" in ts
    assert "date_bin(" not in ts
    assert "date_bin(" in plain
    assert "time_bucket(" not in plain
    assert "last(" not in plain
    assert "array_agg(" in plain


def _variables(board: dict[str, Any]) -> dict[str, Variable]:
    return {
        v["name"]: Variable(v["name"], v["multi"], v["includeAll"], v.get("allValue"))
        for v in board["templating"]["list"]
    }


@pytest.mark.parametrize(
    ("boards", "timescaledb"), [(BOARDS, True), (PLAIN, False)], ids=["timescale", "plain"]
)
@pytest.mark.parametrize("selected", [{}, {"site": ["s1", "s'2"], "station": ["CP1"]}])
def test_every_query_expands_to_sql_that_parses(
    boards: list[dict[str, Any]], timescaledb: bool, selected: dict[str, Any]
) -> None:
    for board in boards:
        for sql in _sqls(board):
            out = expand(
                sql,
                time_range=RANGE,
                interval=timedelta(minutes=5),
                variables=_variables(board),
                selected=selected,
                timescaledb=timescaledb,
            )
            assert "$" not in out.replace("$$", ""), out
            pglast.parse_sql(out)  # raises on a syntax error


def test_provisioning_files_keep_the_paths_the_deployment_mounts() -> None:
    entry = provider()
    assert entry["type"] == "file"
    assert entry["options"]["path"] == "/var/lib/grafana/dashboards/chargeflow"
    ds = datasource_template()
    assert ds["type"] == "grafana-postgresql-datasource"
    assert ds["jsonData"]["timescaledb"] is True
    assert env_references(ds) == set(DB_ENV)
    assert ds["secureJsonData"]["password"] == "${CHARGEFLOW_GRAFANA_DB_PASSWORD}"


def test_the_datasource_body_takes_its_connection_from_the_environment() -> None:
    env = {name: f"v-{name[-4:].lower()}" for name in DB_ENV}
    env["CHARGEFLOW_GRAFANA_DB_HOST"] = "db"
    env["CHARGEFLOW_GRAFANA_DB_PORT"] = "5432"
    body = datasource_body(env)
    assert body["url"] == "db:5432"
    assert body["jsonData"]["database"] == env["CHARGEFLOW_GRAFANA_DB_NAME"]
    assert body["secureJsonData"]["password"] == env["CHARGEFLOW_GRAFANA_DB_PASSWORD"]
    del env["CHARGEFLOW_GRAFANA_DB_USER"]
    env["CHARGEFLOW_GRAFANA_DB_NAME"] = ""
    with pytest.raises(ProvisioningError) as caught:
        datasource_body(env)
    message = str(caught.value)
    assert "CHARGEFLOW_GRAFANA_DB_NAME" in message
    assert "CHARGEFLOW_GRAFANA_DB_USER" in message
    assert env["CHARGEFLOW_GRAFANA_DB_PASSWORD"] not in message


def test_export_writes_each_dashboard_as_provisioning_json(tmp_path: Path) -> None:
    target = tmp_path / "chargeflow"
    result = CliRunner().invoke(app, ["dashboards", "export", str(target), "--currency", "EUR"])
    assert result.exit_code == 0, result.output
    files = sorted(target.glob("*.json"))
    assert [f.name for f in files] == [
        "chargeflow-billing-eur.json",
        "chargeflow-maintenance.json",
        "chargeflow-operations.json",
    ]
    written = {f.stem: json.loads(f.read_text()) for f in files}
    assert written == {b["uid"]: b for b in dashboards(Flavour(), ("EUR",))}
    plain = CliRunner().invoke(app, ["dashboards", "export", str(target), "--plain-postgresql"])
    assert plain.exit_code == 0
    assert "date_bin(" in (target / "chargeflow-billing-eur.json").read_text()
    bad = CliRunner().invoke(app, ["dashboards", "export", str(target), "--currency", "E1"])
    assert bad.exit_code != 0
