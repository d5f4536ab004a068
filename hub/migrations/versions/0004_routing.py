"""routing attributes and delivery mapping

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('mapping', sa.String(length=100), nullable=True, comment='renders the body; none: the payload as is'))

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attributes', sa.JSON(), nullable=True, comment='routing facts: service, destination, region, reader, author'))



def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('attributes')

    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('mapping')

