"""blob store and unique submission ids

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('message_parts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('blob_path', sa.String(length=500), nullable=True, comment='large parts: file in the blob store'))
        batch_op.alter_column('body',
               existing_type=sa.LargeBinary(),
               nullable=True,
               comment='the bytes, unless they are in the blob store')

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_fitconnect_submission_id'))
        batch_op.create_unique_constraint(batch_op.f('uq_messages_fitconnect_submission_id'), ['fitconnect_submission_id'])


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_messages_fitconnect_submission_id'), type_='unique')
        batch_op.create_index(batch_op.f('ix_messages_fitconnect_submission_id'), ['fitconnect_submission_id'], unique=False)

    with op.batch_alter_table('message_parts', schema=None) as batch_op:
        batch_op.alter_column('body',
               existing_type=sa.LargeBinary(),
               nullable=False,
               comment=None)
        batch_op.drop_column('blob_path')

