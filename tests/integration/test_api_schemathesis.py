"""schemathesis over the whole API: every operation, every check, every role.

The real app is served by uvicorn over HTTP with the real database behind it (a station,
sites, sessions, availability, status history, load rows, alerts and connector health,
so happy paths answer 200). Each operation gets a bounded number of generated cases
(positive and negative) per role (admin, operator, maintenance, billing, public) and
without a key and with a wrong key; all of schemathesis' checks run on every response:
no 5xx, status codes and content types documented, response bodies and headers
conforming to the schema, positive data accepted, negative data rejected, auth enforced.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import requests
import schemathesis
from hypothesis import settings
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES

from api.config import ApiConfig
from api.main import create_app
from api.params import (
    EXAMPLE_ACTIVE_SESSION_ID,
    EXAMPLE_ALERT_FIRST_SEEN,
    EXAMPLE_ALERT_ID,
    EXAMPLE_COMMAND_ID,
    EXAMPLE_CUSTOMER,
    EXAMPLE_HELD_SESSIONS,
    EXAMPLE_QUOTE_ID,
    EXAMPLE_RETIRED_STATION,
    EXAMPLE_SESSION_ID,
    EXAMPLE_SITE,
    EXAMPLE_STATION,
    parse_timestamp,
)
from api.routers.meters import EXAMPLE_METER
from api.schemas.firmware import EXAMPLE_ROLLOUT_ID
from api.schemas.payment_methods import EXAMPLE_ID_TAG
from api.schemas.tariffs import EXAMPLE_TARIFF_BODY
from billing.payments.postpaid import PostpaidProvider
from billing.payments.service import PaymentService
from bus.alerts import AlertKind, AlertStatus
from bus.sessions import Quality
from chargeflow.stack import DatabaseServer
from store import billing_reviews as review_store
from store import cdrs as cdr_store
from store.api_keys import create_api_key
from store.db import migrate
from store.meters import add_meter
from store.stations import provision_station
from tests.support.alerts import AlertFacts, connector_health, fault_alert, write_alerts
from tests.support.api import T0, insert_session, served_api
from tests.support.cdrs import closed_session, credit_of, issued_cdr
from tests.support.load_events import seed_load_data

pytestmark = pytest.mark.integration

ROLES = ("admin", "operator", "maintenance", "billing", "public")
MAX_EXAMPLES = 10
LONGEST_SPAN = timedelta(days=6)  # within the load endpoint's bucket limit at 1m


@pytest.fixture(scope="module")
def seeded_database(pg_server: DatabaseServer) -> Iterator[str]:
    name = f"chargeflow_schemathesis_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name, exist_ok=False)
    migrate(url)
    seed_load_data(url)
    # The ids the OpenAPI document gives as examples, so example cases find data.
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO sites (site_id, name, capacity_w) VALUES (%s, 'Depot', 50000)",
            (EXAMPLE_SITE,),
        )
    provision_station(url, EXAMPLE_STATION, EXAMPLE_SITE)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO connector_availability (charge_point_id, connector_id, status,"
            " connector_status, ocpp_status, error_code, status_at, online,"
            " connection_changed_at, updated_at)"
            " VALUES (%s, 1, 'Available', 'Available', 'Available', 'NoError', %s, true, %s, %s)",
            (EXAMPLE_STATION, T0, T0, T0),
        )
        db.execute(
            "INSERT INTO connector_status_history (charge_point_id, connector_id, at, status,"
            " ocpp_status, error_code) VALUES (%s, 1, %s, 'Available', 'Available', 'NoError')",
            (EXAMPLE_STATION, T0),
        )
        insert_session(db, session_id=EXAMPLE_SESSION_ID, charge_point_id=EXAMPLE_STATION)
        seed_smart_charging(db)
        for k in range(1, 4):
            insert_session(
                db,
                charge_point_id=EXAMPLE_STATION,
                started_at=T0 + timedelta(hours=k),
                stopped_at=T0 + timedelta(hours=k, minutes=30),
            )
        insert_session(
            db,
            charge_point_id="N2",
            status="active",
            stopped_at=None,
            meter_stop_wh=None,
            energy_wh=None,
            quality="estimated",
            energy_source=None,
        )
    seed_alerts(url)
    seed_commands(url)
    seed_rollout(url)
    seed_payment(url)
    asyncio.run(seed_billing(url))
    seed_tariffs(url)
    seed_registry(url)
    yield url
    pg_server.drop_database(name)


def seed_smart_charging(db: psycopg.Connection[Any]) -> None:
    """A session still charging (the charging-needs example) and the smart-charging
    flow's allocation of the example site."""
    insert_session(
        db,
        session_id=EXAMPLE_ACTIVE_SESSION_ID,
        charge_point_id=EXAMPLE_STATION,
        connector_id=2,
        status="active",
        stopped_at=None,
        meter_stop_wh=None,
        energy_wh=None,
        energy_source=None,
    )
    body = {
        "site_id": EXAMPLE_SITE,
        "at": "2026-01-05T10:00:00+00:00",
        "limit_a": [72.4, 72.4, 72.4],
        "base_load_a": [0.0, 0.0, 0.0],
        "fixed_load_a": [0.0, 0.0, 0.0],
        "allocated_a": [16.0, 16.0, 16.0],
        "headroom_a": [56.4, 56.4, 56.4],
        "sessions": [
            {
                "station_id": EXAMPLE_STATION,
                "connector_id": 2,
                "transaction_id": "1",
                "current_a": 16.0,
                "site_phases": [1, 2, 3],
                "reason": "max current",
                "controlled": True,
            }
        ],
        "non_compliant": {},
        "budgeted": [],
    }
    db.execute(
        "INSERT INTO smart_charging_allocations (site_id, at, body) VALUES (%s, %s, %s)",
        (EXAMPLE_SITE, T0, Jsonb(body)),
    )


def seed_commands(url: str) -> None:
    """Commands need the station's OCPP version (no broker here: they stay pending);
    the example command, answered."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "UPDATE stations SET ocpp_version = '1.6' WHERE charge_point_id = %s",
            (EXAMPLE_STATION,),
        )
        db.execute(
            "INSERT INTO commands (command_id, charge_point_id, action, payload, ocpp_version,"
            " requested_by, requested_at, expires_at, timeout_s, status, sent_at, completed_at,"
            " response, published_at) VALUES (%s, %s, 'Reset', '{\"type\": \"Soft\"}', '1.6',"
            " 'seed', %s, %s, 30, 'accepted', %s, %s, '{\"status\": \"Accepted\"}', %s)",
            (EXAMPLE_COMMAND_ID, EXAMPLE_STATION, T0, T0 + timedelta(minutes=2), T0, T0, T0),
        )


def seed_rollout(url: str) -> None:
    """The example firmware rollout, paused (the worker leaves it; resume may run it)."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO firmware_rollouts (rollout_id, name, status, firmware, wave_size,"
            " wave_unit, failure_threshold, threshold_unit, station_timeout_s, created_by)"
            " VALUES (%s, 'seed', 'paused', '{\"location\": \"https://fw.example/a.bin\"}',"
            " 1, 'count', 0, 'count', 3600, 'seed')",
            (EXAMPLE_ROLLOUT_ID,),
        )
        db.execute(
            "INSERT INTO firmware_rollout_stations (rollout_id, charge_point_id, wave, state)"
            " VALUES (%s, %s, 0, 'installed')",
            (EXAMPLE_ROLLOUT_ID, EXAMPLE_STATION),
        )


def seed_payment(url: str) -> None:
    """A postpaid payment authorised for the example session, so that capture, refund and
    cancel find one (whichever comes first succeeds; the others answer 409); the example
    id tag's payment method."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO payment_methods (id_tag, provider, customer) VALUES (%s, 'wallet', %s)",
            (EXAMPLE_ID_TAG, EXAMPLE_CUSTOMER),
        )
    with ConnectionPool(url, min_size=1, max_size=2) as pool:
        service = PaymentService(pool, {"postpaid": PostpaidProvider(pool)})
        service.preauthorize(
            session_id=str(EXAMPLE_SESSION_ID),
            provider="postpaid",
            customer="example-customer",
            currency="EUR",
            amount_minor=5000,
        )


async def seed_billing(url: str) -> None:
    """The example session's CDR and its credit (customer, month and ids the document
    gives as examples) and one held session per review decision."""
    session = closed_session(T0, session_id=str(EXAMPLE_SESSION_ID), charge_point_id="CP-1")
    cdr = issued_cdr(session)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        # Corrected: the first CDR, its credit, and the second revision in force.
        for issued in (cdr, credit_of(cdr), issued_cdr(session, revision=2)):
            await cdr_store.insert_cdr(
                conn,
                issued,
                charge_point_id=EXAMPLE_STATION,
                connector_id=1,
                site_id=EXAMPLE_SITE,
                id_tag="TAG-1",
                customer=EXAMPLE_CUSTOMER,
            )
        for k, session_id in enumerate(EXAMPLE_HELD_SESSIONS.values()):
            held = closed_session(
                T0 + timedelta(hours=k), session_id=session_id, quality=Quality.CORRECTED
            )
            await review_store.hold_session(conn, held, ["quality corrected: register_jump"])


def seed_alerts(url: str) -> None:
    """The example alert (open, with two versions), a resolved one, and the example
    station's connector health."""
    example = AlertFacts(
        EXAMPLE_STATION, 1, AlertKind.CONNECTOR_OVERHEATING, EXAMPLE_ALERT_FIRST_SEEN
    )
    assert example.alert_id == EXAMPLE_ALERT_ID
    resolved = AlertFacts(EXAMPLE_STATION, 2, AlertKind.GROUND_FAULT, T0)
    write_alerts(
        url,
        [
            fault_alert(example),
            fault_alert(example, after=timedelta(minutes=15)),
            fault_alert(resolved, after=timedelta(minutes=5), status=AlertStatus.RESOLVED),
        ],
        [
            connector_health(
                EXAMPLE_STATION,
                1,
                T0,
                risk=0.7,
                contributions={"temp_rise_per_kw": 3.2},
                features={"temp_rise_per_kw": 1.4},
            )
        ],
    )


def seed_tariffs(url: str) -> None:
    """The example tariff, assigned everywhere (assignment 1, the example id) and to the
    example site (so resolving still answers once assignment 1 has been ended)."""
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO tariffs (tariff_id, version, body, currency, created_by)"
            " VALUES ('STANDARD', 1, %s, 'EUR', 'seed')",
            (Jsonb(EXAMPLE_TARIFF_BODY),),
        )
        for scope, target in (("default", None), ("site", EXAMPLE_SITE)):
            db.execute(
                "INSERT INTO tariff_assignments (tariff_id, scope, target, valid_from,"
                " created_by) VALUES ('STANDARD', %s, %s, '2020-01-01T00:00:00Z', 'seed')",
                (scope, target),
            )
        # The example quote, valid for a day: the first attach uses it, later ones are 409.
        db.execute(
            "INSERT INTO price_quotes (quote_id, charge_point_id, connector_id, tariff_id,"
            " tariff_version, body, created_at, valid_until) SELECT %s, %s, 1, tariff_id,"
            " version, body, now(), now() + interval '1 day' FROM tariffs"
            " WHERE tariff_id = 'STANDARD'",
            (EXAMPLE_QUOTE_ID, EXAMPLE_STATION),
        )


def seed_registry(url: str) -> None:
    """The registry's examples: a station to decommission, the example station's
    connector 1 and meter, the example id tag."""
    provision_station(url, EXAMPLE_RETIRED_STATION, EXAMPLE_SITE)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "INSERT INTO connectors (charge_point_id, connector_id) VALUES (%s, 1)",
            (EXAMPLE_STATION,),
        )
        db.execute("INSERT INTO id_tags (id_tag) VALUES (%s)", (EXAMPLE_ID_TAG,))
    add_meter(url, EXAMPLE_METER, EXAMPLE_STATION, 1)


@pytest.fixture(scope="module")
def role_keys(seeded_database: str) -> dict[str, str]:
    return {role: create_api_key(seeded_database, f"schemathesis-{role}", role) for role in ROLES}


@pytest.fixture(scope="module")
def http_session() -> Iterator[requests.Session]:
    """One keep-alive session for every call (schemathesis' default opens one per call)."""
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def api_url(seeded_database: str) -> Iterator[str]:
    # The failed-auth limit is a setting: generous here, where wrong keys are the point.
    # Commands expire after 1 s (no broker, no gateway: they stay pending), so `?wait`
    # and the event stream of a queued command end at once.
    config = ApiConfig(database_url=seeded_database, auth_failure_limit=1_000_000, command_ttl_s=1)
    with served_api(config) as url:
        yield url


# The app's own OpenAPI document (built from the code, no database needed); the test
# checks that the served one is the same.
DOCUMENT = create_app(ApiConfig(database_url="postgresql://unused")).openapi()
# Bodies whose validity JSON Schema cannot state (an OCPI Tariff's ISO 4217 currency,
# end after start, min_price <= max_price; an assignment's target fitting its scope,
# valid_until after valid_from, its tariff existing): a schema-valid body may still be
# a 422 naming the rule. Those rules are tested in test_tariff_registry.py and
# test_tariff_preview.py; every other check runs on these operations as on the rest.
# Commands: a payload the station's OCPP version does not accept (raw; a 1.6 limit
# that is not a multiple of 0.1, a 2.0.1-only body), a session or transaction id the
# station does not have, a charging profile's rules across fields (a tx profile names
# one transaction, periods start at 0), an Idempotency-Key reused for another body.
# The registry: a site, station or meter named that does not exist, a time zone that is
# not IANA, a security profile without a password (or 3), min above max current, a meter
# on a connector its role does not fit (tested in test_api_registry_*.py).
# Smart charging: a limit window that ends before it starts.
# Firmware: 2.0.1-only fields for the 1.6 station; rollouts: unknown stations, a site
# without stations, stations and site_id together.
COMMAND_ACTIONS = (
    "remote-start",
    "remote-stop",
    "reset",
    "unlock-connector",
    "change-availability",
    "trigger-message",
    "set-charging-profile",
    "clear-charging-profile",
    "get-composite-schedule",
    "configuration",
    "get-configuration",
    "set-variables",
    "get-variables",
    "upload-diagnostics",
    "reserve",
    "cancel-reservation",
    "send-local-list",
    "clear-cache",
    "update-firmware",
    "raw",
)
CROSS_FIELD_BODIES = (
    "/v1/tariffs",
    "/v1/tariffs/preview",
    "/v1/tariff-assignments",
    "/v1/firmware-rollouts",
    *(f"/v1/stations/{{station_id}}/commands/{action}" for action in COMMAND_ACTIONS),
    "/v1/stations",
    "/v1/sites",
    "/v1/meters",
)
CROSS_FIELD_OPERATIONS = (
    *(f"POST {path}" for path in CROSS_FIELD_BODIES),
    "PATCH /v1/stations/{station_id}",
    "PUT /v1/stations/{station_id}/connectors/{connector_id}",
    "PATCH /v1/sites/{site_id}",
    "PATCH /v1/meters/{meter_id}",
    "PUT /v1/sites/{site_id}/limits",
)
POSITIVE_OR_RULE_REJECTED = [*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, "422"]
CONFIG = SchemathesisConfig.from_dict(
    {
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
        "checks": {"enabled": True},
        "operations": [
            {
                "include-name": name,
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": POSITIVE_OR_RULE_REJECTED}
                },
            }
            for name in CROSS_FIELD_OPERATIONS
        ],
    }
)
# A copy: schemathesis adds the links it infers to the document it is given.
schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT), config=CONFIG)


RANGES = (("from", "to"), ("since", "until"))


def ordered_range(query: dict[str, Any] | None) -> dict[str, Any] | None:
    """`from < to`, `since < until` (and the load endpoint's span limit) relate two
    parameters, which OpenAPI cannot express; keep generated ranges within the stated
    rules so positive cases are valid. Invalid timestamps are left as generated."""
    if not isinstance(query, dict):
        return query
    for first, last in RANGES:
        try:
            start = parse_timestamp(query.get(first))
            end = parse_timestamp(query.get(last))
        except ValueError:
            continue
        if end <= start or end - start > LONGEST_SPAN:
            query = {**query, last: _rfc3339(start + timedelta(hours=1))}
    return query


def _rfc3339(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


WRONG_KEY = "cf_0123456789abcdef_" + "x" * 43
IDENTITIES = (*ROLES, "no key", "wrong key")
CASES: dict[str, dict[str, int]] = {}
STATUSES: dict[str, dict[int, int]] = {}


def identity_for(case: Any) -> str:
    """The identities take turns per operation, so each operation's cases are sent as
    every role, without a key and with a wrong key, in equal shares. (A failing case
    that hypothesis replays may go out as another identity; the first failure and its
    identity are reported either way.)"""
    seen = CASES.setdefault(case.operation.label, {})
    turn = sum(seen.values())
    who = IDENTITIES[turn % len(IDENTITIES)]
    seen[who] = seen.get(who, 0) + 1
    return who


@schema.parametrize()
@settings(deadline=None)
def test_every_operation_every_check(
    case: Any, api_url: str, role_keys: dict[str, str], http_session: requests.Session
) -> None:
    case.query = ordered_range(case.query)
    who = identity_for(case)
    if who == "no key":
        headers: dict[str, str] = {}
    elif who == "wrong key":
        headers = {"X-API-Key": WRONG_KEY}
    else:
        headers = {"X-API-Key": role_keys[who]}
    try:
        response = case.call_and_validate(base_url=api_url, headers=headers, session=http_session)
    except Exception as exc:
        exc.add_note(f"sent as: {who}")
        raise
    answered = STATUSES.setdefault(case.operation.label, {})
    answered[response.status_code] = answered.get(response.status_code, 0) + 1


def test_stateful_sequences_follow_links(
    api_url: str, role_keys: dict[str, str], http_session: requests.Session
) -> None:
    """schemathesis' stateful phase: sequences of calls that feed one response into the
    next request (e.g. a listed session's id into GET /v1/sessions/{session_id}), every
    check on every step, as admin (the role that may call every operation)."""
    headers = {"X-API-Key": role_keys["admin"]}

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            case.query = ordered_range(case.query)

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": api_url, "headers": headers, "session": http_session}

    Workflow.run(settings=settings(max_examples=10, stateful_step_count=4, deadline=None))


def test_the_served_document_is_the_one_tested(api_url: str) -> None:
    assert httpx.get(f"{api_url}/openapi.json").json() == DOCUMENT


def test_every_authenticated_operation_ran_as_every_identity() -> None:
    """Runs after the schemathesis test (file order): each /v1 operation got cases
    as every role, without a key and with a wrong key."""
    authenticated = {
        op: seen for op, seen in CASES.items() if " /v1/" in op and "/webhook" not in op
    }
    assert len(authenticated) == 102, CASES
    # A payment can be captured, refunded or cancelled once: after the first, the state
    # refuses the others (409). A firmware rollout is paused, resumed or cancelled once
    # from a state, too.
    one_shot = ("/capture", "/refund", "/cancel", "/attach", "/pause", "/resume")
    # 2.0.1-only commands: the example station speaks 1.6, so here they are refused with
    # the 422 that says so (their happy path: test_api_commands_typed.py).
    only_201 = ("/commands/set-variables", "/commands/get-variables")
    for operation, seen in authenticated.items():
        assert set(seen) == set(IDENTITIES), (operation, seen)
        answered = set(STATUSES[operation])
        # Happy paths were exercised too, and authentication was refused.
        assert 401 in answered, (operation, answered)
        if operation.endswith(one_shot):
            assert answered & {200, 409}, (operation, answered)
        elif operation.endswith(only_201):
            assert 422 in answered, (operation, answered)
        else:  # 201 for a POST that creates, 202 a queued command, 204 a DELETE
            assert answered & {200, 201, 202, 204}, (operation, answered)
    print(
        f"schemathesis cases per operation and identity: {CASES}; "
        f"total {sum(sum(seen.values()) for seen in CASES.values())}; "
        f"statuses: {STATUSES}"
    )
