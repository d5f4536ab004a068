"""console: users, their tenants, login sessions, the audit log; message versions; indexes for the search

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'users',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False, comment='viewer | operator | admin'),
        sa.Column('password_hash', sa.String(length=200), nullable=True,
                  comment='argon2id; none: identity provider only'),
        sa.Column('oidc_subject', sa.String(length=255), nullable=True, comment='issuer|sub of the IdP login'),
        sa.Column('disabled', sa.Boolean(), nullable=False),
        sa.Column('created_at', When, nullable=False),
        sa.Column('updated_at', When, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
        sa.UniqueConstraint('name', name=op.f('uq_users_name')),
        sa.UniqueConstraint('oidc_subject', name=op.f('uq_users_oidc_subject')),
    )
    op.create_table(
        'user_tenants',
        sa.Column('user_id', BigId, nullable=False),
        sa.Column('tenant', sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_tenants_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'tenant', name=op.f('pk_user_tenants')),
    )
    op.create_table(
        'login_sessions',
        sa.Column('token_sha256', sa.String(length=64), nullable=False),
        sa.Column('user_id', BigId, nullable=False),
        sa.Column('csrf_token', sa.String(length=64), nullable=False),
        sa.Column('created_at', When, nullable=False),
        sa.Column('expires_at', When, nullable=False),
        sa.Column('remote_addr', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_login_sessions_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('token_sha256', name=op.f('pk_login_sessions')),
    )
    op.create_index(op.f('ix_login_sessions_user_id'), 'login_sessions', ['user_id'])
    op.create_index(op.f('ix_login_sessions_expires_at'), 'login_sessions', ['expires_at'])
    op.create_table(
        'audit_log',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        sa.Column('at', When, nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False, comment='user:<name> | operator:<token name>'),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('action', sa.String(length=40), nullable=False),
        sa.Column('tenant', sa.String(length=100), nullable=True),
        sa.Column('message_id', sa.Uuid(), nullable=True),
        sa.Column('remote_addr', sa.String(length=64), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    )
    op.create_index(op.f('ix_audit_log_at'), 'audit_log', ['at'])
    op.create_index(op.f('ix_audit_log_message_id'), 'audit_log', ['message_id'])
    op.create_index('ix_audit_log_tenant_at', 'audit_log', ['tenant', 'at'])

    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_version_id', sa.Uuid(), nullable=True,
                                      comment='the message this one corrects (edit-before-resubmit)'))
        batch_op.create_foreign_key(batch_op.f('fk_messages_previous_version_id_messages'), 'messages',
                                    ['previous_version_id'], ['id'])
        batch_op.drop_index('ix_messages_created_at')
        batch_op.create_index('ix_messages_created_at', ['created_at', 'id'])
        batch_op.create_index('ix_messages_tenant_created', ['tenant', 'created_at', 'id'])
        batch_op.create_index('ix_messages_status_created', ['status', 'created_at', 'id'])
        batch_op.create_index('ix_messages_sender_reference', ['sender_reference'])
        batch_op.create_index('ix_messages_external_id', ['external_id'])
        batch_op.create_index('ix_messages_case_id', ['case_id'])
        batch_op.create_index('ix_messages_previous_version_id', ['previous_version_id'])
    op.create_index('ix_deliveries_target', 'deliveries', ['target', 'message_id'])
    op.create_index(op.f('ix_events_at'), 'events', ['at'])


def downgrade() -> None:
    op.drop_index(op.f('ix_events_at'), table_name='events')
    op.drop_index('ix_deliveries_target', table_name='deliveries')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        for name in ('ix_messages_previous_version_id', 'ix_messages_case_id', 'ix_messages_external_id',
                     'ix_messages_sender_reference', 'ix_messages_status_created', 'ix_messages_tenant_created'):
            batch_op.drop_index(name)
        batch_op.drop_index('ix_messages_created_at')
        batch_op.create_index('ix_messages_created_at', ['created_at'])
        batch_op.drop_constraint(batch_op.f('fk_messages_previous_version_id_messages'), type_='foreignkey')
        batch_op.drop_column('previous_version_id')
    op.drop_table('audit_log')
    op.drop_table('login_sessions')
    op.drop_table('user_tenants')
    op.drop_table('users')
