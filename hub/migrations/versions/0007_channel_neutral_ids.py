"""channel-neutral ids: messages.external_id (unique per channel) and case_id; intake_failures per channel

Revision ID: 0007
Revises: 0006

The columns are renamed, not copied: every stored FIT-Connect message keeps its submission id (now
``external_id``) and case id, and every counted intake failure its submission id (``external_id``, with
``channel = 'fitconnect'``) and destination id (``source``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_EXTERNAL_ID = "the channel's own id of the message (a submission id); unique per channel"
_CASE_ID = "the channel's case the message belongs to"
_KIND_BEFORE, _KIND_AFTER = 'worker | fitconnect-poller', 'worker | <channel>-poller'


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint('uq_messages_fitconnect_submission_id', type_='unique')
        batch_op.alter_column('fitconnect_submission_id', new_column_name='external_id',
                              existing_type=sa.String(length=64), existing_nullable=True, comment=_EXTERNAL_ID)
        batch_op.alter_column('fitconnect_case_id', new_column_name='case_id',
                              existing_type=sa.String(length=64), existing_nullable=True, comment=_CASE_ID)
    with op.batch_alter_table('messages', schema=None) as batch_op:  # after the rename (SQLite rebuilds the table)
        batch_op.create_unique_constraint(batch_op.f('uq_messages_channel_external_id'), ['channel', 'external_id'])

    with op.batch_alter_table('intake_failures', schema=None) as batch_op:
        # Every failure counted so far belongs to the only polling channel there was.
        batch_op.add_column(sa.Column('channel', sa.String(length=40), nullable=False,
                                      server_default='fitconnect'))
    with op.batch_alter_table('intake_failures', schema=None) as batch_op:
        batch_op.alter_column('channel', server_default=None, existing_type=sa.String(length=40),
                              existing_nullable=False)
        batch_op.drop_constraint('pk_intake_failures', type_='primary')
        batch_op.alter_column('submission_id', new_column_name='external_id', existing_type=sa.String(length=64),
                              existing_nullable=False, comment="the channel's id of the message")
        batch_op.alter_column('destination_id', new_column_name='source', existing_type=sa.String(length=64),
                              existing_nullable=False, comment='where the channel found it (e.g. a destination id)')
    with op.batch_alter_table('intake_failures', schema=None) as batch_op:
        batch_op.create_primary_key('pk_intake_failures', ['channel', 'external_id'])

    with op.batch_alter_table('loop_heartbeats', schema=None) as batch_op:
        batch_op.alter_column('kind', existing_type=sa.String(length=40), existing_nullable=False,
                              comment=_KIND_AFTER, existing_comment=_KIND_BEFORE)


def downgrade() -> None:
    with op.batch_alter_table('loop_heartbeats', schema=None) as batch_op:
        batch_op.alter_column('kind', existing_type=sa.String(length=40), existing_nullable=False,
                              comment=_KIND_BEFORE, existing_comment=_KIND_AFTER)

    # Failures of other channels than FIT-Connect had no place before this revision.
    op.execute(sa.text("DELETE FROM intake_failures WHERE channel <> 'fitconnect'"))
    with op.batch_alter_table('intake_failures', schema=None) as batch_op:
        batch_op.drop_constraint('pk_intake_failures', type_='primary')
        batch_op.alter_column('external_id', new_column_name='submission_id', existing_type=sa.String(length=64),
                              existing_nullable=False, comment=None)
        batch_op.alter_column('source', new_column_name='destination_id', existing_type=sa.String(length=64),
                              existing_nullable=False, comment=None)
        batch_op.drop_column('channel')
    with op.batch_alter_table('intake_failures', schema=None) as batch_op:
        batch_op.create_primary_key('pk_intake_failures', ['submission_id'])

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_messages_channel_external_id'), type_='unique')
        batch_op.alter_column('external_id', new_column_name='fitconnect_submission_id',
                              existing_type=sa.String(length=64), existing_nullable=True, comment=None)
        batch_op.alter_column('case_id', new_column_name='fitconnect_case_id',
                              existing_type=sa.String(length=64), existing_nullable=True, comment=None)
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_messages_fitconnect_submission_id', ['fitconnect_submission_id'])
