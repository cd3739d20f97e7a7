"""The test database's data tables, and emptying them between tests in either storage
mode (plain PostgreSQL or TimescaleDB)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from store.aggregates import AGGREGATE_VIEWS
from store.db import StorageMode, storage_mode

DATA_TABLES = (
    "meter_samples",
    "sessions",
    "connectors",
    "stations",
    "sites",
    "id_tags",
    "api_keys",
    "load_connector_1m",
    "site_load_live",
    "connector_status_history",
    "connector_availability",
    "sessions_outbox",
    "commands",
    "command_deadletters",
    "gateway_offsets",
    "gateways",
    "load_aggregate_invalidations",
    "alerts",
    "alert_events",
    "alerts_outbox",
    "connector_health",
    "connector_risk_1m",
    "webhook_deliveries",
    "payment_events",
    "session_payments",
    "payment_methods",
    "ledger_postings",
    "ledger_transactions",
    "ledger_holds",
    "ledger_accounts",
    "cdrs",
    "signed_meter_values",
    "billing_review_events",
    "billing_reviews",
    "tariffs",
    "tariff_assignments",
    "price_quotes",
    "firmware_statuses",
    "firmware_rollout_stations",
    "firmware_rollouts",
    "ocpp_messages",
    "api_audit",
)


# TimescaleDB only. The test database's retention jobs never drop rows mid-test (tests
# that need retention delete the rows themselves), and cleaning empties the continuous
# aggregates, which keep materialised rows after their hypertable is truncated until a
# refresh over the whole range. Checked by tests/unit/test_timescale_sql.py.
TIMESCALE_PAUSE_RETENTION = (
    "SELECT alter_job(job_id, scheduled => false) FROM timescaledb_information.jobs"
    " WHERE proc_name = 'policy_retention'"
)


TIMESCALE_EMPTY_AGGREGATES = tuple(
    f"CALL refresh_continuous_aggregate('{name}', NULL, NULL)" for name in AGGREGATE_VIEWS
)


def clear_data(database_url: str) -> None:
    """Empty every data table and the load aggregates, in either storage mode."""
    timescale = storage_mode(database_url) is StorageMode.TIMESCALEDB
    # Plain PostgreSQL: the aggregates are tables.
    tables = DATA_TABLES if timescale else (*DATA_TABLES, *AGGREGATE_VIEWS)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE " + ", ".join(tables) + " CASCADE")
        if timescale:
            for statement in TIMESCALE_EMPTY_AGGREGATES:
                conn.execute(statement)


def set_allow_connections(admin_url: str, database: str, allow: bool) -> None:
    """A real outage of one database: it refuses new connections and its sessions are
    terminated (``allow=False``), until allowed again."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(database), sql.Literal(allow)
            )
        )
        if not allow:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
