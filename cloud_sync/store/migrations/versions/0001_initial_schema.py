"""Initial schema: devices, service accounts, messages, samples, gaps, quarantine, counters,
models, artifacts, bundles, leader lock.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Frozen: later changes go into new migrations, never here (types are spelt out
instead of imported from schema.py for the same reason).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID, NAME, VERSION = sa.String(64), sa.String(128), sa.String(64)
INDEXES = {
    "devices": [["fleet"]],
    "messages": [["device_id", "kind", "ts"], ["received_at"]],
    "samples": [["model_name", "model_version", "ts"], ["received_at"]],
    "seq_gaps": [["detected_at"]],
    "quarantine": [["received_at"]],
}


def _time(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Double(), nullable=nullable)


def _row_id() -> sa.Column:
    return sa.Column("id", ROW_ID, autoincrement=True, nullable=False)


def _pk(table: str, *cols: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*cols, name=f"pk_{table}")


def _uq(table: str, *cols: str) -> sa.UniqueConstraint:
    return sa.UniqueConstraint(*cols, name=f"uq_{table}_{'_'.join(cols)}")


def _registry_tables() -> None:
    op.create_table(
        "devices",
        sa.Column("id", ID, nullable=False),
        sa.Column("fleet", ID, nullable=False),
        sa.Column("profile", ID), sa.Column("model_name", NAME),
        sa.Column("model_version", VERSION), sa.Column("agent_version", VERSION),
        sa.Column("state", sa.String(16), server_default="unknown", nullable=False),
        sa.Column("registered_by", sa.String(8), nullable=False),
        sa.Column("credential_hash", sa.String(256)),
        _time("first_seen", True), _time("last_seen", True), _time("created_at"),
        sa.CheckConstraint("registered_by IN ('auto', 'cli')", name="ck_devices_registered_by"),
        _pk("devices", "id"))
    op.create_table(
        "service_accounts",
        sa.Column("username", ID, nullable=False),
        sa.Column("credential_hash", sa.String(256), nullable=False),
        _time("created_at"), _pk("service_accounts", "username"))
    op.create_table(
        "models",
        _row_id(), sa.Column("name", NAME, nullable=False),
        sa.Column("version", VERSION, nullable=False), _time("published_at"),
        sa.Column("metrics", JSON, nullable=False), sa.Column("lineage", JSON, nullable=False),
        _pk("models", "id"), _uq("models", "name", "version"))
    op.create_table(
        "artifacts",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False), _time("created_at"),
        _pk("artifacts", "sha256"))
    op.create_table(
        "bundles",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("model_id", ROW_ID, nullable=False),
        sa.Column("profile", ID, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("precision", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("manifest", JSON, nullable=False), _time("created_at"),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name="fk_bundles_model_id_models",
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sha256"], ["artifacts.sha256"],
                                name="fk_bundles_sha256_artifacts"),
        _pk("bundles", "sha256"), _uq("bundles", "model_id", "profile"))
    op.create_table(
        "leader_lock",
        sa.Column("name", ID, nullable=False), sa.Column("holder", sa.String(128), nullable=False),
        _time("acquired_at"), _time("expires_at"), _pk("leader_lock", "name"))


def _ingest_tables() -> None:
    op.create_table(
        "messages",
        _row_id(), sa.Column("device_id", ID, nullable=False), sa.Column("fleet", ID),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False), _time("ts"), _time("received_at"),
        sa.Column("model_name", NAME), sa.Column("model_version", VERSION),
        *(sa.Column(name, sa.Float()) for name in ("window_s",)),
        sa.Column("inferences", sa.Integer()), sa.Column("errors", sa.Integer()),
        *(sa.Column(name, sa.Float()) for name in
          ("latency_p50", "latency_p95", "latency_p99", "confidence_mean")),
        sa.Column("payload", JSON, nullable=False),
        _pk("messages", "id"), _uq("messages", "device_id", "kind", "seq"))
    op.create_table(
        "samples",
        _row_id(), sa.Column("device_id", ID, nullable=False), sa.Column("fleet", ID),
        sa.Column("seq", sa.BigInteger(), nullable=False), _time("ts"), _time("received_at"),
        sa.Column("model_name", NAME), sa.Column("model_version", VERSION),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("pred_class", sa.Integer()), sa.Column("pred_confidence", sa.Float()),
        sa.Column("input_dtype", sa.String(16), nullable=False),
        sa.Column("input_shape", JSON, nullable=False),
        sa.Column("input_data", sa.LargeBinary(), nullable=False),
        sa.Column("payload", JSON, nullable=False),
        _pk("samples", "id"), _uq("samples", "device_id", "seq"))
    op.create_table(
        "seq_gaps",
        _row_id(), sa.Column("device_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("from_seq", sa.BigInteger(), nullable=False),
        sa.Column("to_seq", sa.BigInteger(), nullable=False), _time("detected_at"),
        _pk("seq_gaps", "id"), _uq("seq_gaps", "device_id", "kind", "from_seq"))
    op.create_table(
        "quarantine",
        _row_id(), _time("received_at"), sa.Column("topic", sa.String(256), nullable=False),
        sa.Column("device_id", ID), sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("detail", sa.String(256), server_default="", nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("payload_size", sa.Integer(), nullable=False), _pk("quarantine", "id"))
    op.create_table(
        "ingest_stats",
        sa.Column("counter", sa.String(96), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False), _time("updated_at"),
        _pk("ingest_stats", "counter"))


def upgrade() -> None:
    _registry_tables()
    _ingest_tables()
    for table, indexes in INDEXES.items():
        for cols in indexes:
            op.create_index(f"ix_{table}_{'_'.join(cols)}", table, cols)


def downgrade() -> None:
    for table in ("bundles", "artifacts", "models", "service_accounts", "devices",
                  "leader_lock", "messages", "samples", "seq_gaps", "quarantine",
                  "ingest_stats"):
        op.drop_table(table)
