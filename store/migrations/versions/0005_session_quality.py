"""Session energy quality: sources, corrections and closed-session publication.

Reserved in the chain so parallel work cannot create two heads; filled in by the
change that needs it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
