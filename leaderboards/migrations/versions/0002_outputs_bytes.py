"""Store submitted outputs byte-exact as uploaded (`outputs` text -> bytes), so that they hash to
`outputs_sha256`. Rows stored before keep the text the first release kept (joined hypotheses, UTF-8).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:  # SQLite: copies the table, CAST(outputs AS BLOB)
        batch.alter_column("outputs", type_=sa.LargeBinary(), existing_type=sa.Text(), existing_nullable=False,
                           postgresql_using="convert_to(outputs, 'UTF8')")


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.alter_column("outputs", type_=sa.Text(), existing_type=sa.LargeBinary(), existing_nullable=False,
                           postgresql_using="convert_from(outputs, 'UTF8')")
