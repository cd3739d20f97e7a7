"""Issued CDRs and the billing desk's review of held sessions.

- ``cdrs``: one row per issued OCPI 2.2.1 CDR (a session's CDR, a credit CDR that
  cancels one, a later revision). ``body`` is the CDR exactly as issued (jsonb keeps
  numbers as numeric: never through a float); the other columns repeat what listings,
  exports and statements filter and add up on (totals in integer minor units).
  Immutable: a trigger refuses UPDATE and DELETE (a correction is a credit CDR and a new
  revision, never an edit). ``UNIQUE (session_id, revision, credit)``: a session has one
  CDR and at most one credit per revision.
- ``billing_reviews``: one row per session held for review (energy not ``exact``, no
  stop), its status ``held`` -> ``released`` | ``corrected`` | ``written_off`` and who
  decided, when, why.
- ``billing_review_events``: append-only audit of every review (held, each decision:
  actor, note, the row before and after); a trigger refuses UPDATE and DELETE.

Plain tables in both storage modes (no hypertable: ``cdrs`` is keyed by its id, reviews
are updated under row locks).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE cdrs (
            cdr_id text PRIMARY KEY CHECK (length(cdr_id) BETWEEN 1 AND 39),
            session_id text NOT NULL,
            revision integer NOT NULL CHECK (revision BETWEEN 1 AND 999),
            credit boolean NOT NULL,
            credit_reference_id text,
            charge_point_id text NOT NULL,
            connector_id integer NOT NULL,
            site_id text,
            id_tag text,
            customer text,
            currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
            total_excl_minor bigint NOT NULL,
            total_incl_minor bigint NOT NULL,
            energy_wh bigint NOT NULL,
            start_date_time timestamptz NOT NULL,
            end_date_time timestamptz NOT NULL,
            issued_at timestamptz NOT NULL DEFAULT now(),
            body jsonb NOT NULL,
            UNIQUE (session_id, revision, credit),
            CONSTRAINT cdrs_credit_references_its_original
                CHECK (credit = (credit_reference_id IS NOT NULL))
        );
        CREATE INDEX cdrs_start_idx ON cdrs (start_date_time, cdr_id);
        CREATE INDEX cdrs_customer_idx ON cdrs (customer, start_date_time);
        CREATE INDEX cdrs_station_idx ON cdrs (charge_point_id, start_date_time);

        CREATE FUNCTION billing_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% rows are immutable: %', TG_TABLE_NAME, TG_ARGV[0]
                USING ERRCODE = 'restrict_violation';
        END
        $$;
        CREATE TRIGGER cdrs_immutable
            BEFORE UPDATE OR DELETE ON cdrs
            FOR EACH ROW EXECUTE FUNCTION
                billing_refuse_change('issue a credit CDR and a new revision instead');

        CREATE TABLE billing_reviews (
            session_id text PRIMARY KEY,
            charge_point_id text NOT NULL,
            connector_id integer NOT NULL,
            id_tag text,
            started_at timestamptz NOT NULL,
            stopped_at timestamptz,
            energy_wh bigint,
            quality text NOT NULL,
            reasons text[] NOT NULL,
            status text NOT NULL DEFAULT 'held'
                CHECK (status IN ('held', 'released', 'corrected', 'written_off')),
            decided_by text,
            decided_at timestamptz,
            note text,
            corrected_energy_wh bigint CHECK (corrected_energy_wh >= 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT billing_reviews_decided
                CHECK ((status = 'held') = (decided_at IS NULL)),
            CONSTRAINT billing_reviews_correction_has_energy
                CHECK ((status = 'corrected') = (corrected_energy_wh IS NOT NULL))
        );
        CREATE INDEX billing_reviews_status_idx ON billing_reviews (status, created_at);

        CREATE TABLE billing_review_events (
            event_id bigserial PRIMARY KEY,
            session_id text NOT NULL REFERENCES billing_reviews (session_id),
            at timestamptz NOT NULL DEFAULT now(),
            actor text NOT NULL,
            action text NOT NULL
                CHECK (action IN ('held', 'released', 'corrected', 'written_off')),
            note text,
            before jsonb,
            after jsonb NOT NULL
        );
        CREATE INDEX billing_review_events_session_idx
            ON billing_review_events (session_id, event_id);
        CREATE TRIGGER billing_review_events_append_only
            BEFORE UPDATE OR DELETE ON billing_review_events
            FOR EACH ROW EXECUTE FUNCTION
                billing_refuse_change('the review audit is append-only');
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE billing_review_events;
        DROP TABLE billing_reviews;
        DROP TABLE cdrs;
        DROP FUNCTION billing_refuse_change();
        """
    )
