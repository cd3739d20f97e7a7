"""Remote commands: lifecycle and audit of commands sent to charge points.

Reserved in the chain so parallel work cannot create two heads; filled in by the
change that needs it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
