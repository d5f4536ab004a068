"""throughput: messages.waiting_on (a message parked on an open circuit) with its partial index

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('waiting_on', sa.String(length=100), nullable=True,
                                      comment='retry_wait: the target whose open circuit it waits for; released '
                                              'when it closes'))
        batch_op.create_index('ix_messages_waiting_on', ['waiting_on'], unique=False,
                              postgresql_where=sa.text('waiting_on IS NOT NULL'),
                              sqlite_where=sa.text('waiting_on IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_waiting_on', postgresql_where=sa.text('waiting_on IS NOT NULL'),
                            sqlite_where=sa.text('waiting_on IS NOT NULL'))
        batch_op.drop_column('waiting_on')
