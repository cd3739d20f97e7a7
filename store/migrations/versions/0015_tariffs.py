"""Tariffs: where they live, which one applies, and the price a driver was shown.

- ``tariffs``: every version of every OCPI 2.2.1 Tariff, ``body`` = the Tariff JSON as
  given (validated by ``billing.tariffs.parse_tariff`` first; numbers stored exactly, as
  jsonb numerics). A new version is a new row; a trigger refuses every UPDATE, so a
  session priced under (tariff_id, version) is priced under exactly what was stored.
- ``tariff_assignments``: which tariff applies where and when: scope ``connector``
  (target ``"<charge_point_id>:<connector_id>"``), ``station`` (charge point id),
  ``site`` (site id), ``customer_group`` (the group's name: that group anywhere) or
  ``default`` (no target); ``customer_group`` narrows a site/station/connector
  assignment to the group's members. Valid over ``[valid_from, valid_until)``
  (``valid_until`` null = open). No two assignments with the same scope, target and
  group overlap in time (exclusion constraint, btree_gist). Ending an assignment sets
  ``valid_until`` (and ``ended_by``/``ended_at``): history stays.
- ``sites.time_zone``: the site's IANA time zone (validated with zoneinfo by the store);
  tariff restrictions (start_time, day_of_week, ...) are local times.
- ``id_tags.customer_group``: the group a driver's token belongs to (null = none).
- ``price_quotes``: the frozen Tariff a driver was shown for a connector, valid until
  ``valid_until``; ``session_id`` is set once, when a session uses it.

Regular tables in both storage modes (plain PostgreSQL and TimescaleDB); btree_gist is a
contrib extension shipped with PostgreSQL (and the TimescaleDB images).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE EXTENSION IF NOT EXISTS btree_gist;

        CREATE TABLE tariffs (
            tariff_id text NOT NULL CHECK (length(tariff_id) BETWEEN 1 AND 36),
            version integer NOT NULL CHECK (version >= 1),
            body jsonb NOT NULL CHECK (jsonb_typeof(body) = 'object'),
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            created_at timestamptz NOT NULL DEFAULT now(),
            created_by text NOT NULL,
            PRIMARY KEY (tariff_id, version)
        );

        CREATE FUNCTION tariffs_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'tariff versions are immutable: create a new version'
                USING ERRCODE = 'restrict_violation';
        END
        $$;
        CREATE TRIGGER tariffs_no_update BEFORE UPDATE ON tariffs
            FOR EACH ROW EXECUTE FUNCTION tariffs_are_immutable();

        CREATE TABLE tariff_assignments (
            assignment_id bigserial PRIMARY KEY,
            tariff_id text NOT NULL,
            scope text NOT NULL
                CHECK (scope IN ('site', 'station', 'connector', 'customer_group', 'default')),
            target text,
            customer_group text,
            valid_from timestamptz NOT NULL,
            valid_until timestamptz,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            ended_by text,
            ended_at timestamptz,
            CHECK ((scope = 'default') = (target IS NULL)),
            CHECK (customer_group IS NULL OR scope IN ('site', 'station', 'connector')),
            -- valid_until = valid_from: ended before it began (an empty window).
            CHECK (valid_until IS NULL OR valid_until >= valid_from),
            CONSTRAINT tariff_assignments_no_overlap EXCLUDE USING gist (
                scope WITH =,
                (COALESCE(target, '')) WITH =,
                (COALESCE(customer_group, '')) WITH =,
                tstzrange(valid_from, valid_until, '[)') WITH &&
            )
        );
        CREATE INDEX tariff_assignments_target_idx ON tariff_assignments (scope, target);
        CREATE INDEX tariff_assignments_tariff_idx ON tariff_assignments (tariff_id);

        ALTER TABLE sites ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';
        ALTER TABLE id_tags ADD COLUMN customer_group text;

        CREATE TABLE price_quotes (
            quote_id uuid PRIMARY KEY,
            charge_point_id text NOT NULL,
            connector_id integer NOT NULL CHECK (connector_id >= 0),
            id_tag text,
            tariff_id text NOT NULL,
            tariff_version integer NOT NULL,
            body jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            valid_until timestamptz NOT NULL,
            session_id uuid UNIQUE,
            attached_at timestamptz,
            FOREIGN KEY (tariff_id, tariff_version) REFERENCES tariffs (tariff_id, version),
            CHECK (valid_until > created_at),
            CHECK ((session_id IS NULL) = (attached_at IS NULL))
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE price_quotes;
        ALTER TABLE id_tags DROP COLUMN customer_group;
        ALTER TABLE sites DROP COLUMN time_zone;
        DROP TABLE tariff_assignments;
        DROP TABLE tariffs;
        DROP FUNCTION tariffs_are_immutable();
        """
    )
