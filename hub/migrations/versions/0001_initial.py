"""initial schema: messages, message_parts, events, deliveries

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('messages',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant', sa.String(length=100), nullable=False),
    sa.Column('channel', sa.String(length=40), nullable=False),
    sa.Column('sender', sa.String(length=100), nullable=False),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('sender_reference', sa.String(length=255), nullable=True),
    sa.Column('fitconnect_submission_id', sa.String(length=64), nullable=True),
    sa.Column('fitconnect_case_id', sa.String(length=64), nullable=True),
    sa.Column('xoev_message_uuid', sa.String(length=100), nullable=True),
    sa.Column('standard', sa.String(length=100), nullable=True),
    sa.Column('standard_version', sa.String(length=40), nullable=True),
    sa.Column('message_type', sa.String(length=200), nullable=True),
    sa.Column('route', sa.String(length=100), nullable=True),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('payload_size', sa.BigInteger(), nullable=False),
    sa.Column('payload_sha256', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('resume_status', sa.String(length=20), nullable=True, comment='the status a retry_wait/dead message resumes at'),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lease_owner', sa.String(length=200), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_messages')),
    sa.UniqueConstraint('tenant', 'sender', 'idempotency_key', name=op.f('uq_messages_tenant_sender_idempotency_key'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_messages_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_fitconnect_submission_id'), ['fitconnect_submission_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_messages_xoev_message_uuid'), ['xoev_message_uuid'], unique=False)

    op.create_table('deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('target', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False, comment='pending | delivered | failed'),
    sa.Column('idempotency_key', sa.String(length=255), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('response', sa.JSON(), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_deliveries_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deliveries')),
    sa.UniqueConstraint('message_id', 'target', name=op.f('uq_deliveries_message_id_target'))
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deliveries_message_id'), ['message_id'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False, comment='transition | note | attempt'),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('from_status', sa.String(length=20), nullable=True),
    sa.Column('to_status', sa.String(length=20), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_events_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_events'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_events_message_id'), ['message_id'], unique=False)

    op.create_table('message_parts',
    sa.Column('message_id', sa.Uuid(), nullable=False),
    sa.Column('part_no', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False, comment='payload | attachment | metadata'),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('body', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_parts_message_id_messages'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('message_id', 'part_no', name=op.f('pk_message_parts'))
    )


def downgrade() -> None:
    op.drop_table('message_parts')
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_message_id'))

    op.drop_table('events')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deliveries_message_id'))

    op.drop_table('deliveries')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_xoev_message_uuid'))
        batch_op.drop_index(batch_op.f('ix_messages_fitconnect_submission_id'))
        batch_op.drop_index('ix_messages_due')
        batch_op.drop_index('ix_messages_created_at')

    op.drop_table('messages')
