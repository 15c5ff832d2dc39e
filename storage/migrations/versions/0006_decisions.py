"""decisions: approvals, delegations, and what was decided on each case

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 23:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('delegations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delegator', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('delegate', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('starts_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ends_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ended_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ended_by', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('created_at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('start_notified_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('end_notified_at', storage.types.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('delegations', schema=None) as batch_op:
        batch_op.create_index('ix_delegations_delegate_ends_at', ['delegate', 'ends_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_delegations_delegator'), ['delegator'], unique=False)

    op.create_table('approvals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('approver', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('principal', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('senior', sa.Boolean(), nullable=False),
    sa.Column('amount', storage.types.DecimalString(length=40), nullable=True),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True),
    sa.Column('at', storage.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('case_id', 'round', 'approver', name='uq_approvals_case_round_approver'),
    sa.UniqueConstraint('case_id', 'round', 'principal', name='uq_approvals_case_round_principal')
    )
    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_approvals_case_id'), ['case_id'], unique=False)

    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approvals_needed', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('senior_needed', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('approval_round', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('approval_amount', storage.types.DecimalString(length=40), nullable=True))
        batch_op.add_column(sa.Column('approval_currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True))
        batch_op.add_column(sa.Column('approvals_given', sa.JSON(), nullable=False, server_default='[]'))
        batch_op.add_column(sa.Column('approved_amount', storage.types.DecimalString(length=40), nullable=True))
        batch_op.add_column(sa.Column('approved_currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True))
        batch_op.add_column(sa.Column('approved_at', storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('decision_reason', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True))
        batch_op.add_column(sa.Column('resolution', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
        batch_op.add_column(sa.Column('resolution_note', sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True))
        batch_op.add_column(sa.Column('resolution_reference', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch_op.add_column(sa.Column('callback_done_by', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
        batch_op.add_column(sa.Column('callback_done_at', storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('follow_up_done_at', storage.types.UTCDateTime(timezone=True), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('follow_up_done_at')
        batch_op.drop_column('callback_done_at')
        batch_op.drop_column('callback_done_by')
        batch_op.drop_column('resolution_reference')
        batch_op.drop_column('resolution_note')
        batch_op.drop_column('resolution')
        batch_op.drop_column('decision_reason')
        batch_op.drop_column('approved_at')
        batch_op.drop_column('approved_currency')
        batch_op.drop_column('approved_amount')
        batch_op.drop_column('approvals_given')
        batch_op.drop_column('approval_currency')
        batch_op.drop_column('approval_amount')
        batch_op.drop_column('approval_round')
        batch_op.drop_column('senior_needed')
        batch_op.drop_column('approvals_needed')

    with op.batch_alter_table('approvals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_approvals_case_id'))

    op.drop_table('approvals')
    with op.batch_alter_table('delegations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delegations_delegator'))
        batch_op.drop_index('ix_delegations_delegate_ends_at')

    op.drop_table('delegations')
