"""Deleted submissions leave a tombstone (`deleted_submissions`: whose, when submitted, when deleted), so
that a deletion does not give back a place under the daily limit. The outputs and provenance go.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deleted_submissions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("submission_id", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=False),
    )
    for column in ("user_id", "submitted_at"):
        op.create_index(f"ix_deleted_submissions_{column}", "deleted_submissions", [column])


def downgrade() -> None:
    op.drop_table("deleted_submissions")
