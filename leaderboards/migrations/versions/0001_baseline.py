"""The schema of the first release (users, API tokens, submissions with outputs as text). Databases that
release made carry no version table; `attnrepro leaderboard migrate` stamps them with this revision.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("daily_limit", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("label", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_tokens_user_id", "tokens", ["user_id"])
    op.create_table(
        "submissions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("board", sa.String(100), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("reproduction", sa.String(64), nullable=True),
        sa.Column("preset", sa.String(64), nullable=True),
        sa.Column("config", sa.JSON(), nullable=True),
        sa.Column("commit", sa.String(40), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("wandb_url", sa.String(500), nullable=True),
        sa.Column("compute", sa.JSON(), nullable=True),
        sa.Column("claimed_scores", sa.JSON(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.Column("outputs_sha256", sa.String(64), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False),
        sa.Column("primary_score", sa.Float(), nullable=False),
        sa.Column("signature", sa.String(500), nullable=False),
        sa.Column("metric_version", sa.String(32), nullable=False),
        sa.Column("score_detail", sa.JSON(), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "idempotency_key", name="one_submission_per_key"),
    )
    for column in ("board", "user_id", "primary_score", "created_at"):
        op.create_index(f"ix_submissions_{column}", "submissions", [column])


def downgrade() -> None:
    for table in ("submissions", "tokens", "users"):
        op.drop_table(table)
