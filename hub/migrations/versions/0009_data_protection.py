"""data protection: data keys (hub.sealing), the key id of each sealed part, sender references sealed (text), an
index for retention (hub.retention)

Existing rows stay plain (key_id NULL) and readable; the re-seal job (`xhub keys rewrap`, and the loop in every
worker process once a master key is configured) encrypts them in small batches.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'data_keys',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('wrapped', sa.LargeBinary(), nullable=False, comment='nonce + AES-GCM(master key, data key)'),
        sa.Column('master', sa.String(length=16), nullable=False,
                  comment='fingerprint of the master key that wraps it'),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True,
                  comment='replaced by a newer key then'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_data_keys')),
    )
    with op.batch_alter_table('message_parts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_id', sa.Integer(), nullable=True,
                                      comment='the data key that sealed body or blob (hub.sealing); NULL: stored plain'))
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.alter_column('sender_reference', existing_type=sa.String(length=255), type_=sa.Text(),
                              existing_nullable=True,
                              comment="the sender's own reference (up to 255 characters); sealed (hub.sealing) "
                                      "with a master key")
        batch_op.create_index('ix_messages_status_updated_at', ['status', 'updated_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_status_updated_at')
        batch_op.alter_column('sender_reference', existing_type=sa.Text(), type_=sa.String(length=255),
                              existing_nullable=True, comment=None,
                              existing_comment="the sender's own reference (up to 255 characters); sealed "
                                               "(hub.sealing) with a master key")
    with op.batch_alter_table('message_parts', schema=None) as batch_op:
        batch_op.drop_column('key_id')
    op.drop_table('data_keys')
