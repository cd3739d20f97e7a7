"""connector_status_history: offline periods (``Offline`` rows and a ``reason``).

``flows.status`` now writes the station's connection changes into the history:

* an ``Offline`` row per known connector when the station goes offline (the
  ``station.connection`` event's time; ``ocpp_status`` is ``Offline`` too), and
* a row with the connector's last known status when the station is back online
  (the online event's time), which ends the offline period.

Changes:

* ``status`` may be ``Offline`` (the CHECK constraint is replaced; the natural key
  ``(charge_point_id, connector_id, at, status)`` is unchanged, so replays still
  insert nothing);
* ``reason text``: the gateway's reason on rows derived from a connection event
  (``closed by station``, ``connected``, ...); NULL on statuses the station reported.
  Readers ordering rows of one connector at the same instant put a restored status
  (reason set, not Offline) before a station-reported one, and Offline after it
  (``store.status.status_history``).

TimescaleDB: the hypertable has compression enabled, and most TimescaleDB versions
refuse to add a CHECK constraint to such a hypertable. The migration therefore
removes the compression policy, decompresses the compressed chunks (status changes
only: a small table), disables compression, alters the table and enables
compression and its policy again with the settings of 0006; the policy recompresses
chunks older than 30 days on its next run. Plain PostgreSQL: a plain ALTER TABLE.

Downgrade deletes the rows derived from connection events (``reason IS NOT NULL``)
and any ``Offline`` row before restoring the old constraint.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from alembic import op
from sqlalchemy import text

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLE = "connector_status_history"
CONSTRAINT = "connector_status_history_status_check"
STATUSES = (
    "'Available', 'Preparing', 'Charging', 'SuspendedEV', 'SuspendedEVSE', 'Finishing', "
    "'Reserved', 'Unavailable', 'Faulted'"
)


def _storage_mode() -> str:
    row = (
        op.get_bind()
        .execute(text("SELECT value FROM chargeflow_meta WHERE key = 'storage_mode'"))
        .first()
    )
    return "postgresql" if row is None else str(row[0])


# TimescaleDB: switch compression off around the change (see the module docstring) and
# on again with the settings of 0006, one statement each. Collected without a server by
# tests/unit/test_timescale_sql.py, which parses and checks them.
TIMESCALE_BEFORE = (
    f"SELECT remove_compression_policy('{TABLE}', if_exists => true)",
    f"SELECT decompress_chunk(c, if_compressed => true) FROM show_chunks('{TABLE}') c",
    f"ALTER TABLE {TABLE} SET (timescaledb.compress = false)",
)
TIMESCALE_AFTER = (
    f"""ALTER TABLE {TABLE} SET (
        timescaledb.compress,
        timescaledb.compress_segmentby = 'charge_point_id, connector_id',
        timescaledb.compress_orderby = 'at DESC, status')""",
    f"SELECT add_compression_policy('{TABLE}', INTERVAL '30 days')",
)


def timescale_statements() -> tuple[str, ...]:
    """Every statement the TimescaleDB branch of :func:`_alter` (upgrade and downgrade)
    adds, in order: :data:`TIMESCALE_BEFORE` runs before the change, :data:`TIMESCALE_AFTER`
    after it."""
    return (*TIMESCALE_BEFORE, *TIMESCALE_AFTER)


def _alter(statements: str) -> None:
    """Run ``statements`` on the table; on TimescaleDB with compression switched off
    around them (see the module docstring)."""
    timescale = _storage_mode() == "timescaledb"
    if timescale:
        for statement in TIMESCALE_BEFORE:
            op.execute(statement)
    op.execute(statements)
    if timescale:
        for statement in TIMESCALE_AFTER:
            op.execute(statement)


def upgrade() -> None:
    _alter(
        f"""
        ALTER TABLE {TABLE}
            DROP CONSTRAINT {CONSTRAINT},
            ADD CONSTRAINT {CONSTRAINT} CHECK (status IN ({STATUSES}, 'Offline')),
            ADD COLUMN reason text;
        """
    )


def downgrade() -> None:
    _alter(
        f"""
        DELETE FROM {TABLE} WHERE reason IS NOT NULL OR status = 'Offline';
        ALTER TABLE {TABLE}
            DROP COLUMN reason,
            DROP CONSTRAINT {CONSTRAINT},
            ADD CONSTRAINT {CONSTRAINT} CHECK (status IN ({STATUSES}));
        """
    )
