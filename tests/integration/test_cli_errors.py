"""The real ``chargeflow`` CLI as a subprocess against the real database: every error
is one clear line on stderr and a non-zero exit, never a traceback or a secret; and
the launcher's development key replaces the previous runs' keys."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import psycopg
import pytest

from chargeflow.launcher import LocalStack
from chargeflow.settings import Settings
from chargeflow.stack import free_port
from store.api_keys import create_api_key, list_api_keys
from tests.support.paths import ROOT

pytestmark = pytest.mark.integration


@dataclass
class Result:
    code: int
    out: str
    err: str


def chargeflow(*args: str, database_url: str | None) -> Result:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("CHARGEFLOW_DATABASE_URL", None)
    if database_url is not None:
        env["CHARGEFLOW_DATABASE_URL"] = database_url
    done = subprocess.run(
        [sys.executable, "-m", "chargeflow.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def assert_one_line_error(result: Result, *, contains: str) -> None:
    assert result.code != 0, result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: ")
    assert contains in lines[0]
    assert "Traceback" not in result.err + result.out


def test_revoke_prints_only_the_key_id_and_fails_on_an_unknown_key(clean_db: str) -> None:
    key = create_api_key(clean_db, "to revoke", "operator")
    key_id, secret = key.split("_")[1], key.split("_", 2)[2]

    revoked = chargeflow("apikey", "revoke", key, database_url=clean_db)
    assert revoked.code == 0, revoked
    assert revoked.out.strip() == f"revoked {key_id}"
    assert secret not in revoked.out + revoked.err
    assert [k.active for k in list_api_keys(clean_db) if k.key_id == key_id] == [False]

    again = chargeflow("apikey", "revoke", key, database_url=clean_db)
    assert_one_line_error(again, contains=key_id)
    assert secret not in again.out + again.err
    unknown = chargeflow("apikey", "revoke", "0000000000000000", database_url=clean_db)
    assert_one_line_error(unknown, contains="no active API key")


@pytest.mark.parametrize(
    ("args", "contains"),
    [
        (("station", "site", "DEPOT", "--capacity-w", "0"), "--capacity-w"),
        (("station", "site", "DEPOT", "--capacity-w", "-5"), "--capacity-w"),
        (("station", "site", "DEPOT", "--capacity-w", "lots"), "--capacity-w"),
        (("apikey", "create", "--role", "root"), "unknown role"),
        (("apikey", "create", "--role", "admin", "--name", " "), "non-empty name"),
        (("apikey", "revoke"), "Missing argument"),
        (("station", "add", "CP-1", "--password", "short"), "16"),
        (("no-such-command",), "No such command"),
    ],
)
def test_bad_arguments_are_one_line_and_a_non_zero_exit(
    clean_db: str, args: tuple[str, ...], contains: str
) -> None:
    assert_one_line_error(chargeflow(*args, database_url=clean_db), contains=contains)
    with psycopg.connect(clean_db) as conn:
        assert conn.execute("SELECT count(*) FROM sites").fetchone() == (0,)


@pytest.mark.parametrize(
    "args", [("apikey", "list"), ("migrate",), ("station", "site", "DEPOT", "--capacity-w", "1000")]
)
def test_an_unreachable_or_missing_database_is_one_line_without_the_password(
    database_url: str, args: tuple[str, ...]
) -> None:
    unreachable = f"postgresql://postgres:CliDbPw123@127.0.0.1:{free_port()}/chargeflow"
    result = chargeflow(*args, database_url=unreachable)
    assert_one_line_error(result, contains="cannot reach the database")
    assert "CliDbPw123" not in result.out + result.err

    missing = database_url.rsplit("/", 1)[0].replace("postgres@", "postgres:CliDbPw123@")
    result = chargeflow(*args, database_url=f"{missing}/no_such_database_here")
    assert_one_line_error(result, contains="does not exist")
    assert "CliDbPw123" not in result.out + result.err


def test_each_launch_revokes_the_previous_development_key(clean_db: str) -> None:
    other = create_api_key(clean_db, "someone else's key", "admin")
    stack = LocalStack(Settings(simulated_stations=1))
    stack.database_url = clean_db
    first = stack.seed()  # what `chargeflow run` does on each start
    second = stack.seed()
    active = {k.key_id for k in list_api_keys(clean_db, include_revoked=False)}
    assert active == {other.split("_")[1], second.split("_")[1]}
    assert first.split("_")[1] not in active
