"""Gateway security: station credentials, authentication failures, connection tracking.

Reserved in the chain so parallel work cannot create two heads; filled in by the
change that needs it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
