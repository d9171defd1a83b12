"""Initial bank schema: images, puzzles (+ panels, candidates, tags), ratings, attempts, model results,
curators, login failures, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_log',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('curator', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('target', sa.String(length=128), nullable=False),
    sa.Column('before', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('after', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_curator'), ['curator'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_target'), ['target'], unique=False)

    op.create_table('curators',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_curators')),
    sa.UniqueConstraint('name', name=op.f('uq_curators_name'))
    )
    op.create_table('images',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('png', sa.LargeBinary(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_images'))
    )
    op.create_table('login_failures',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_failures'))
    )
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.create_index('ix_login_failures_name_at', ['name', 'at'], unique=False)

    op.create_table('puzzles',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('family', sa.String(length=16), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('difficulty', sa.Integer(), nullable=False),
    sa.Column('layout', sa.JSON(), nullable=False),
    sa.Column('layout_kind', sa.String(length=64), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('source', sa.JSON(), nullable=False),
    sa.Column('licence', sa.String(length=64), nullable=False),
    sa.Column('answer_sha256', sa.String(length=64), nullable=True),
    sa.Column('answer_index', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('submitted_by', sa.String(length=128), nullable=True),
    sa.Column('reject_reason', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('draft', 'pending', 'published', 'rejected')", name=op.f('ck_puzzles_status')),
    sa.ForeignKeyConstraint(['answer_sha256'], ['images.sha256'], name=op.f('fk_puzzles_answer_sha256_images')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_puzzles'))
    )
    with op.batch_alter_table('puzzles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_puzzles_layout_kind'), ['layout_kind'], unique=False)
        batch_op.create_index('ix_puzzles_status_family', ['status', 'family'], unique=False)

    op.create_table('attempts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('puzzle_id', sa.String(length=64), nullable=False),
    sa.Column('visitor_id', sa.String(length=128), nullable=False),
    sa.Column('choice', sa.Integer(), nullable=True),
    sa.Column('correct', sa.Boolean(), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['puzzle_id'], ['puzzles.id'], name=op.f('fk_attempts_puzzle_id_puzzles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attempts'))
    )
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attempts_puzzle_id'), ['puzzle_id'], unique=False)

    op.create_table('model_results',
    sa.Column('puzzle_id', sa.String(length=64), nullable=False),
    sa.Column('bundle_id', sa.String(length=128), nullable=False),
    sa.Column('picked_index', sa.Integer(), nullable=True),
    sa.Column('correct', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['puzzle_id'], ['puzzles.id'], name=op.f('fk_model_results_puzzle_id_puzzles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('puzzle_id', 'bundle_id', name=op.f('pk_model_results'))
    )
    op.create_table('puzzle_candidates',
    sa.Column('puzzle_id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('image_sha256', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['image_sha256'], ['images.sha256'], name=op.f('fk_puzzle_candidates_image_sha256_images')),
    sa.ForeignKeyConstraint(['puzzle_id'], ['puzzles.id'], name=op.f('fk_puzzle_candidates_puzzle_id_puzzles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('puzzle_id', 'position', name=op.f('pk_puzzle_candidates'))
    )
    with op.batch_alter_table('puzzle_candidates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_puzzle_candidates_image_sha256'), ['image_sha256'], unique=False)

    op.create_table('puzzle_panels',
    sa.Column('puzzle_id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('image_sha256', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['image_sha256'], ['images.sha256'], name=op.f('fk_puzzle_panels_image_sha256_images')),
    sa.ForeignKeyConstraint(['puzzle_id'], ['puzzles.id'], name=op.f('fk_puzzle_panels_puzzle_id_puzzles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('puzzle_id', 'position', name=op.f('pk_puzzle_panels'))
    )
    with op.batch_alter_table('puzzle_panels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_puzzle_panels_image_sha256'), ['image_sha256'], unique=False)

    op.create_table('puzzle_tags',
    sa.Column('puzzle_id', sa.String(length=64), nullable=False),
    sa.Column('tag', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['puzzle_id'], ['puzzles.id'], name=op.f('fk_puzzle_tags_puzzle_id_puzzles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('puzzle_id', 'tag', name=op.f('pk_puzzle_tags'))
    )
    with op.batch_alter_table('puzzle_tags', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_puzzle_tags_tag'), ['tag'], unique=False)

    op.create_table('ratings',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('puzzle_id', sa.String(length=64), nullable=True),
    sa.Column('prompt_hashes', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('target', sa.String(length=80), nullable=False),
    sa.Column('bundle_id', sa.String(length=128), nullable=False),
    sa.Column('settings', sa.JSON(), nullable=False),
    sa.Column('output_sha256', sa.String(length=64), nullable=False),
    sa.Column('sample_index', sa.Integer(), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('is_correct', sa.Boolean(), nullable=True),
    sa.Column('visitor_id', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint('(puzzle_id IS NULL) <> (prompt_hashes IS NULL)', name=op.f('ck_ratings_puzzle_or_prompt')),
    sa.CheckConstraint('score IN (-1, 0, 1)', name=op.f('ck_ratings_score')),
    sa.ForeignKeyConstraint(['output_sha256'], ['images.sha256'], name=op.f('fk_ratings_output_sha256_images')),
    sa.ForeignKeyConstraint(['puzzle_id'], ['puzzles.id'], name=op.f('fk_ratings_puzzle_id_puzzles'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ratings')),
    sa.UniqueConstraint('visitor_id', 'output_sha256', 'target', name='uq_ratings_visitor_output_target')
    )
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ratings_puzzle_id'), ['puzzle_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ratings_puzzle_id'))

    op.drop_table('ratings')
    with op.batch_alter_table('puzzle_tags', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_puzzle_tags_tag'))

    op.drop_table('puzzle_tags')
    with op.batch_alter_table('puzzle_panels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_puzzle_panels_image_sha256'))

    op.drop_table('puzzle_panels')
    with op.batch_alter_table('puzzle_candidates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_puzzle_candidates_image_sha256'))

    op.drop_table('puzzle_candidates')
    op.drop_table('model_results')
    with op.batch_alter_table('attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attempts_puzzle_id'))

    op.drop_table('attempts')
    with op.batch_alter_table('puzzles', schema=None) as batch_op:
        batch_op.drop_index('ix_puzzles_status_family')
        batch_op.drop_index(batch_op.f('ix_puzzles_layout_kind'))

    op.drop_table('puzzles')
    with op.batch_alter_table('login_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_login_failures_name_at')

    op.drop_table('login_failures')
    op.drop_table('images')
    op.drop_table('curators')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_target'))
        batch_op.drop_index(batch_op.f('ix_audit_log_curator'))

    op.drop_table('audit_log')
