"""The audit log of every write through the API: ``api_audit``.

One row per POST/PUT/PATCH/DELETE request, whatever its outcome (``api.audit``
middleware): who (``api_key_id`` and ``role``, NULL when the request carried no valid
key), what (``method``, ``route`` = the route template, ``path_params`` = the values
of its parameters, ``summary`` = the body's size, content type and top-level field
names, never its values), when (``at``) and the outcome (``status``). Plain table in
both storage modes; read by ``GET /v1/audit`` (admin).

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07
"""

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE api_audit (
            audit_id uuid PRIMARY KEY,
            at timestamptz NOT NULL,
            api_key_id text,
            role text,
            method text NOT NULL,
            route text NOT NULL,
            path_params jsonb NOT NULL DEFAULT '{}',
            summary jsonb NOT NULL DEFAULT '{}',
            status integer NOT NULL,
            client text,
            duration_ms double precision NOT NULL
        );
        CREATE INDEX api_audit_at_idx ON api_audit (at DESC, audit_id DESC);
        CREATE INDEX api_audit_key_idx ON api_audit (api_key_id, at DESC);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE api_audit")
