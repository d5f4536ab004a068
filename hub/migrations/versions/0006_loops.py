"""loop heartbeats and FIT-Connect intake failures

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('intake_failures',
    sa.Column('submission_id', sa.String(length=64), nullable=False),
    sa.Column('case_id', sa.String(length=64), nullable=False),
    sa.Column('destination_id', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False, comment='failed attempts of any kind'),
    sa.Column('unexpected', sa.Integer(), nullable=False, comment='of those, failures that are not transient'),
    sa.Column('first_failed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_failed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.String(length=300), nullable=False, comment='exception type and code location only'),
    sa.PrimaryKeyConstraint('submission_id', name=op.f('pk_intake_failures'))
    )
    op.create_table('loop_heartbeats',
    sa.Column('loop_id', sa.String(length=200), nullable=False, comment='<kind>@<host>:<pid>:<random>'),
    sa.Column('kind', sa.String(length=40), nullable=False, comment='worker | fitconnect-poller'),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('beat_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_success_at', sa.DateTime(timezone=True), nullable=True, comment='last item or poll that worked'),
    sa.Column('items', sa.BigInteger(), nullable=False, comment='items handled since the loop started'),
    sa.Column('restarts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=300), nullable=True, comment='exception type and code location only'),
    sa.Column('last_error_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('loop_id', name=op.f('pk_loop_heartbeats'))
    )
    with op.batch_alter_table('loop_heartbeats', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_loop_heartbeats_beat_at'), ['beat_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('loop_heartbeats', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_loop_heartbeats_beat_at'))

    op.drop_table('loop_heartbeats')
    op.drop_table('intake_failures')
