"""The first released schema.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from bot.schema import DecimalText, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("account_id", sa.String(64), nullable=False),
        sa.Column("is_open", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("account_name", sa.Text, nullable=False),
        sa.Column("owner_crm_id", sa.String(64)),
        sa.Column("owner_slack_id", sa.String(32)),
        sa.Column("usage_pct", DecimalText),
        sa.Column("threshold", DecimalText, nullable=False),
        sa.Column("card", sa.JSON, nullable=False),
        sa.Column("opened_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("closed_at", UTCDateTime),
        sa.Column("snoozed_until", UTCDateTime),
        sa.Column("acted_by", sa.String(32)),
    )
    op.create_index(
        "uq_alerts_open_account",
        "alerts",
        ["account_id"],
        unique=True,
        sqlite_where=sa.text("is_open"),
        postgresql_where=sa.text("is_open"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("message_key", sa.String(32), nullable=False, index=True),
        sa.Column("alert_id", sa.String(32), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(32)),
        sa.Column("channel", sa.String(32)),
        sa.Column("ts", sa.String(32)),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("error", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime),
    )
    op.create_table(
        "poll_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("threshold", DecimalText, nullable=False),
        sa.Column("evaluated", sa.Integer, nullable=False),
        sa.Column("above", sa.Integer, nullable=False),
        sa.Column("insufficient", sa.Integer, nullable=False),
        sa.Column("sent", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "threshold_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("old", DecimalText),
        sa.Column("new", DecimalText, nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("alert_id", sa.String(32)),
        sa.Column("detail", sa.JSON),
    )
    op.create_table(
        "slack_users",
        sa.Column("email", sa.String(320), primary_key=True),
        sa.Column("user_id", sa.String(32)),
        sa.Column("first_name", sa.Text),
        sa.Column("real_name", sa.Text),
        sa.Column("tz", sa.String(64)),
        sa.Column("error", sa.String(64)),
        sa.Column("fetched_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "seen_events",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    for name in (
        "seen_events",
        "leases",
        "slack_users",
        "audit",
        "threshold_changes",
        "poll_runs",
        "deliveries",
        "alerts",
    ):
        op.drop_table(name)
