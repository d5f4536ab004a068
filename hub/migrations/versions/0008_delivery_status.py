"""delivery status: only pending, delivered, failed (CHECK constraint); events.kind names delivery events

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_deliveries_status'),
                                         "status IN ('pending', 'delivered', 'failed')")
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.alter_column('kind', existing_type=sa.String(length=20), existing_nullable=False,
                              comment='transition | delivery | note | attempt',
                              existing_comment='transition | note | attempt')


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.alter_column('kind', existing_type=sa.String(length=20), existing_nullable=False,
                              comment='transition | note | attempt',
                              existing_comment='transition | delivery | note | attempt')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_deliveries_status'), type_='check')
