"""Fault and security alerts, their history, the connectors' health, webhook deliveries.

- ``alerts``: the current version of every alert (one row per ``alert_id``, the id the
  faults flow derives from telemetry facts, so a replay updates the same rows). People
  acknowledge and resolve through the API (who, when, note); a version from the flow
  never reopens what a person resolved and keeps an acknowledgement.
- ``alert_events``: the history of every alert: each version the flow published
  (``version_key`` = status, severity and last_seen: a replayed version is the same row)
  and each action of a person (``actor``, ``note``).
- ``alerts_outbox``: versions stored but not yet on the ``alerts`` topic (written in the
  transaction that stores the version, published after the commit).
- ``connector_health``: the latest risk of each connector and its top features.
- ``webhook_deliveries``: one row per (endpoint, alert version) with its attempts, the
  next attempt time and whether it was delivered or gave up (dead).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE alerts (
            alert_id text PRIMARY KEY,
            station_id text NOT NULL,
            connector_id integer NOT NULL,
            kind text NOT NULL,
            severity text NOT NULL
                CHECK (severity IN ('low', 'medium', 'high', 'critical')),
            status text NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved')),
            first_seen timestamptz NOT NULL,
            last_seen timestamptz NOT NULL,
            detector text NOT NULL,
            evidence jsonb NOT NULL,
            recommended_action text NOT NULL,
            resolved_at timestamptz,
            acknowledged_at timestamptz,
            acknowledged_by text,
            resolved_by text,
            note text,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX alerts_first_seen_idx ON alerts (first_seen DESC, alert_id DESC);
        CREATE INDEX alerts_station_idx ON alerts (station_id, first_seen DESC);
        CREATE INDEX alerts_unresolved_idx ON alerts (station_id) WHERE status <> 'resolved';

        CREATE TABLE alert_events (
            event_id bigserial PRIMARY KEY,
            alert_id text NOT NULL REFERENCES alerts (alert_id) ON DELETE CASCADE,
            version_key text,
            action text NOT NULL,
            status text NOT NULL,
            severity text NOT NULL,
            at timestamptz NOT NULL,
            evidence jsonb,
            actor text NOT NULL,
            note text,
            recorded_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (alert_id, version_key)
        );
        CREATE INDEX alert_events_alert_idx ON alert_events (alert_id, event_id);

        CREATE TABLE alerts_outbox (
            alert_id text NOT NULL,
            version_key text NOT NULL,
            station_id text NOT NULL,
            payload jsonb NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (alert_id, version_key)
        );
        CREATE INDEX alerts_outbox_created_idx ON alerts_outbox (created_at);

        CREATE TABLE connector_health (
            station_id text NOT NULL,
            connector_id integer NOT NULL,
            at timestamptz NOT NULL,
            risk double precision NOT NULL,
            phase text NOT NULL,
            contributions jsonb NOT NULL,
            features jsonb NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (station_id, connector_id)
        );

        CREATE TABLE webhook_deliveries (
            delivery_id bigserial PRIMARY KEY,
            endpoint text NOT NULL,
            alert_id text NOT NULL,
            version_key text NOT NULL,
            payload jsonb NOT NULL,
            status text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'delivered', 'dead')),
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            last_error text,
            delivered_at timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (endpoint, alert_id, version_key)
        );
        CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
            WHERE status = 'pending';
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE webhook_deliveries;
        DROP TABLE connector_health;
        DROP TABLE alerts_outbox;
        DROP TABLE alert_events;
        DROP TABLE alerts;
        """
    )
