"""The store's tables (SQLAlchemy 2 Core), the same on SQLite and PostgreSQL.

Conventions: times are Unix seconds (``Double``), device and fleet ids are the
protocol's ids (at most 64 characters), JSON columns are ``JSON`` (``JSONB`` on
PostgreSQL). These definitions are what the code reads and writes; the database
itself is built and changed only by the Alembic migrations in ``migrations/``,
which must match them (a test checks that).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

NAMING = {  # stable constraint names, so later migrations can drop/alter them on both databases
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = sa.MetaData(naming_convention=NAMING)

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: INTEGER PK = rowid
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.Double
ID = sa.String(64)
NAME = sa.String(128)
VERSION = sa.String(64)
INCARNATION = sa.String(32)  # a device outbox's random id; "" for messages before protocol 1.2

devices = sa.Table(
    "devices", metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("fleet", ID, nullable=False, index=True),
    sa.Column("profile", ID),
    sa.Column("model_name", NAME),
    sa.Column("model_version", VERSION),
    sa.Column("agent_version", VERSION),
    sa.Column("state", sa.String(16), nullable=False, server_default="unknown"),
    sa.Column("registered_by", sa.String(8), nullable=False),
    sa.Column("credential_hash", sa.String(256)),  # Mosquitto $7$ PBKDF2 hash; NULL: no login
    sa.Column("first_seen", TIME),
    sa.Column("last_seen", TIME),
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("incarnation", INCARNATION, nullable=False, server_default=""),  # the newest seen
    sa.CheckConstraint("registered_by IN ('auto', 'cli')", name="registered_by"),
    sa.Index(None, "state", "last_seen"),  # the silence rule's scan (serve/jobs.py)
)

service_accounts = sa.Table(  # the cloud's own broker users (ingest, controller)
    "service_accounts", metadata,
    sa.Column("username", ID, primary_key=True),
    sa.Column("credential_hash", sa.String(256), nullable=False),
    sa.Column("created_at", TIME, nullable=False),
)

messages = sa.Table(  # telemetry, status, cmd/result: a row per (device, incarnation, kind, seq)
    "messages", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("device_id", ID, nullable=False),
    sa.Column("fleet", ID),
    sa.Column("incarnation", INCARNATION, nullable=False, server_default=""),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("ts", TIME, nullable=False),
    sa.Column("received_at", TIME, nullable=False, index=True),
    sa.Column("model_name", NAME),
    sa.Column("model_version", VERSION),
    sa.Column("window_s", sa.Float),
    sa.Column("inferences", sa.Integer),
    sa.Column("errors", sa.Integer),
    sa.Column("latency_p50", sa.Float),
    sa.Column("latency_p95", sa.Float),
    sa.Column("latency_p99", sa.Float),
    sa.Column("confidence_mean", sa.Float),
    sa.Column("payload", JSON, nullable=False),
    sa.Column("frames", sa.Integer),  # a detector's telemetry (0008): images post-processed,
    sa.Column("empty_frames", sa.Integer),  # those with no detection,
    sa.Column("detections", sa.Integer),  # boxes found
    sa.Column("score_mean", sa.Float),  # and their mean score
    # PostgreSQL partitions the table by day of ts (0009, store/partitions.py): its primary
    # key is (id, ts) there, and its unique key carries ts too (a redelivery has the same ts)
    sa.UniqueConstraint("device_id", "incarnation", "kind", "seq").ddl_if(dialect="sqlite"),
    sa.UniqueConstraint("device_id", "incarnation", "kind", "seq", "ts"
                        ).ddl_if(dialect="postgresql"),
    sa.Index(None, "device_id", "kind", "ts"),
    sa.Index(None, "ts"),  # the drift step's window of the whole fleet (0010)
    postgresql_partition_by="RANGE (ts)",
)

telemetry_windows = sa.Table(  # a device's telemetry summed per drift window, by ingest (0011)
    "telemetry_windows", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("device_id", ID, nullable=False),
    sa.Column("fleet", ID, nullable=False),
    sa.Column("model_name", NAME, nullable=False),
    sa.Column("model_version", VERSION, nullable=False),
    sa.Column("window_s", sa.Float, nullable=False),
    sa.Column("window_start", TIME, nullable=False),
    sa.Column("messages", sa.Integer, nullable=False),
    sa.Column("inferences", sa.BigInteger, nullable=False),
    sa.Column("counts", JSON, nullable=False),  # drift.window_codec's document
    sa.Column("updated_at", TIME, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),  # +1 per update
    sa.Column("scored_version", sa.Integer, nullable=False, server_default="0"),  # the drift
    sa.UniqueConstraint("device_id", "model_name", "model_version", "window_s",  # step's
                        "window_start", name=sa.sql.elements.conv("uq_telemetry_windows_key")),
    sa.Index(None, "window_start"),  # the drift step's windows of the fleet; retention
)

fleet_windows = sa.Table(  # a fleet's telemetry summed per drift window, one part per writer
    "fleet_windows", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("fleet", ID, nullable=False),
    sa.Column("part", sa.String(128), nullable=False),  # the ingest worker's client id
    sa.Column("model_name", NAME, nullable=False),
    sa.Column("model_version", VERSION, nullable=False),
    sa.Column("window_s", sa.Float, nullable=False),
    sa.Column("window_start", TIME, nullable=False),
    sa.Column("messages", sa.Integer, nullable=False),
    sa.Column("inferences", sa.BigInteger, nullable=False),
    sa.Column("counts", JSON, nullable=False),
    sa.Column("updated_at", TIME, nullable=False),
    sa.UniqueConstraint("fleet", "part", "model_name", "model_version", "window_s",
                        "window_start", name=sa.sql.elements.conv("uq_fleet_windows_key")),
    sa.Index(None, "window_start"),
)

window_coverage = sa.Table(  # since when ingest keeps a fleet's windows of one size (0011)
    "window_coverage", metadata,
    sa.Column("fleet", ID, primary_key=True),
    sa.Column("window_s", sa.Float, primary_key=True),
    sa.Column("since", TIME, nullable=False),
)

samples = sa.Table(  # inputs kept for retraining, one row per (device, incarnation, seq)
    "samples", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("device_id", ID, nullable=False),
    sa.Column("fleet", ID),
    sa.Column("incarnation", INCARNATION, nullable=False, server_default=""),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("ts", TIME, nullable=False),
    sa.Column("received_at", TIME, nullable=False, index=True),
    sa.Column("model_name", NAME),
    sa.Column("model_version", VERSION),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("pred_class", sa.Integer),
    sa.Column("pred_confidence", sa.Float),
    sa.Column("input_dtype", sa.String(16), nullable=False),
    sa.Column("input_shape", JSON, nullable=False),
    sa.Column("input_data", sa.LargeBinary, nullable=False),
    sa.Column("payload", JSON, nullable=False),  # the message without input.data
    sa.Column("detections", sa.Integer),  # a detector's sample: boxes in payload (0008)
    sa.UniqueConstraint("device_id", "incarnation", "seq"),
    sa.Index(None, "model_name", "model_version", "ts"),
)

seq_gaps = sa.Table(  # seqs that never arrived: from_seq..to_seq inclusive
    "seq_gaps", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("device_id", ID, nullable=False),
    sa.Column("incarnation", INCARNATION, nullable=False, server_default=""),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("from_seq", sa.BigInteger, nullable=False),
    sa.Column("to_seq", sa.BigInteger, nullable=False),
    sa.Column("detected_at", TIME, nullable=False, index=True),
    sa.UniqueConstraint("device_id", "incarnation", "kind", "from_seq"),
)

seq_heads = sa.Table(  # highest seq stored per (device, incarnation, kind): gaps without scans
    "seq_heads", metadata,
    sa.Column("device_id", ID, primary_key=True),
    sa.Column("incarnation", INCARNATION, primary_key=True, server_default=""),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("head", sa.BigInteger, nullable=False),
    sa.Column("updated_at", TIME, nullable=False),
    sa.Index(None, "updated_at"),  # retention's age rule (0010)
)

quarantine = sa.Table(  # malformed messages, kept (truncated) with the reason, bounded
    "quarantine", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("received_at", TIME, nullable=False, index=True),
    sa.Column("topic", sa.String(256), nullable=False),
    sa.Column("device_id", ID),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("detail", sa.String(256), nullable=False, server_default=""),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("payload_size", sa.Integer, nullable=False),
)

ingest_stats = sa.Table(  # counters by name/reason (accepted, duplicate, quarantined:<reason>...)
    "ingest_stats", metadata,
    sa.Column("counter", sa.String(96), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
    sa.Column("updated_at", TIME, nullable=False),
)

models = sa.Table(  # one row per model name + version
    "models", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("name", NAME, nullable=False),
    sa.Column("version", VERSION, nullable=False),
    sa.Column("published_at", TIME, nullable=False),
    sa.Column("metrics", JSON, nullable=False),
    sa.Column("lineage", JSON, nullable=False),
    sa.UniqueConstraint("name", "version"),
)

artifacts = sa.Table(  # content-addressed files the cloud serves over HTTP
    "artifacts", metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("created_at", TIME, nullable=False),
)

bundles = sa.Table(  # one signed bundle of a model version for one hardware profile
    "bundles", metadata,
    sa.Column("sha256", sa.String(64), sa.ForeignKey("artifacts.sha256"), primary_key=True),
    sa.Column("model_id", ROW_ID, sa.ForeignKey("models.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("profile", ID, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("precision", sa.String(16), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("manifest", JSON, nullable=False),
    sa.Column("created_at", TIME, nullable=False),
    sa.UniqueConstraint("model_id", "profile"),
)

leader_lock = sa.Table(  # SQLite's stand-in for PostgreSQL's advisory lock
    "leader_lock", metadata,
    sa.Column("name", ID, primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("acquired_at", TIME, nullable=False),
    sa.Column("expires_at", TIME, nullable=False),
)

drift_scores = sa.Table(  # one score of one window (device or pooled fleet) of one model version
    "drift_scores", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("scope", sa.String(8), nullable=False),  # device | fleet
    sa.Column("scope_key", sa.String(96), nullable=False),  # device id, or fleet:<fleet>
    sa.Column("fleet", ID, nullable=False),
    sa.Column("device_id", ID),  # NULL for a fleet score
    sa.Column("model_name", NAME, nullable=False),
    sa.Column("model_version", VERSION, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # input | output | confidence
    sa.Column("window_start", TIME, nullable=False),
    sa.Column("window_end", TIME, nullable=False),
    # a pooled fleet's sample sizes pass 2**31 (50,000 devices' input values): BIGINT (0011)
    sa.Column("inferences", sa.BigInteger, nullable=False),
    sa.Column("score", sa.Float),
    sa.Column("critical_value", sa.Float),
    sa.Column("floor", sa.Float),
    sa.Column("threshold", sa.Float),
    sa.Column("n_eff", sa.BigInteger), sa.Column("m_eff", sa.BigInteger),
    sa.Column("n_raw", sa.BigInteger), sa.Column("m_raw", sa.BigInteger),
    sa.Column("verdict", sa.String(24), nullable=False),
    sa.Column("details", JSON, nullable=False),
    sa.Column("computed_at", TIME, nullable=False),
    sa.UniqueConstraint("scope_key", "model_name", "model_version", "kind", "window_start",
                        name=sa.sql.elements.conv("uq_drift_scores_window")),
    sa.Index(None, "fleet", "window_end"),
    sa.Index(None, "window_end"),  # retention deletes by age across fleets
)

triggers = sa.Table(  # a fired retraining trigger; dedupe_key makes firing happen once
    "triggers", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("fleet", ID, nullable=False),
    sa.Column("model_name", NAME, nullable=False),
    sa.Column("model_version", VERSION, nullable=False),
    sa.Column("dedupe_key", sa.String(256), nullable=False, unique=True),
    sa.Column("fired_at", TIME, nullable=False, index=True),
    sa.Column("window_end", TIME, nullable=False),
    sa.Column("policy", JSON, nullable=False),
    sa.Column("evidence", JSON, nullable=False),
    sa.Column("samples_export", sa.String(1024)),
    sa.Column("samples_count", sa.Integer, nullable=False, server_default="0"),
)

actions = sa.Table(  # the outbox: what each trigger asks to be done, and how far it got
    "actions", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("trigger_id", ROW_ID, sa.ForeignKey("triggers.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("config", JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", TIME, nullable=False),
    sa.Column("claimed_at", TIME),
    sa.Column("last_error", sa.String(512)),
    sa.Column("updated_at", TIME, nullable=False),
    sa.UniqueConstraint("trigger_id", "idx"),
    sa.Index(None, "state", "next_attempt_at"),
    sa.CheckConstraint("state IN ('pending', 'running', 'done', 'failed')", name="state"),
)

action_attempts = sa.Table(  # every try of an action: when, how it ended
    "action_attempts", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("action_id", ROW_ID, sa.ForeignKey("actions.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("started_at", TIME, nullable=False),
    sa.Column("finished_at", TIME, nullable=False),
    sa.Column("ok", sa.Boolean, nullable=False),
    sa.Column("error", sa.String(512)),
    sa.UniqueConstraint("action_id", "attempt"),
)

rollouts = sa.Table(  # one staged rollout of a model version; advanced by the controller
    "rollouts", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("model_name", NAME, nullable=False),
    sa.Column("model_version", VERSION, nullable=False),
    sa.Column("fleet", ID),  # the fleet targeted (or the devices' fleet)
    sa.Column("target", JSON, nullable=False),  # {"fleet": ...} or {"devices": [...]}
    sa.Column("policy", JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("wave", sa.Integer, nullable=False, server_default="0"),
    sa.Column("phase_started_at", TIME, nullable=False),
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("updated_at", TIME, nullable=False),
    sa.Column("verdict", JSON),
    sa.Index(None, "state"),
)

rollout_devices = sa.Table(  # one device of a rollout: its wave, command and answer
    "rollout_devices", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("rollout_id", ROW_ID, sa.ForeignKey("rollouts.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("device_id", ID, nullable=False),
    sa.Column("wave", sa.Integer, nullable=False),
    sa.Column("cmd_id", sa.String(64), nullable=False, unique=True),
    sa.Column("old_version", VERSION),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("sent_at", TIME),
    sa.Column("deadline", TIME),
    sa.Column("result", JSON),
    sa.Column("updated_at", TIME, nullable=False),
    sa.Column("released_at", TIME),  # NULL while the rollout is open: it holds the device
    sa.UniqueConstraint("rollout_id", "device_id"),
    sa.Index(sa.sql.elements.conv("uq_rollout_devices_open_device"), "device_id", unique=True,
             sqlite_where=sa.text("released_at IS NULL"),
             postgresql_where=sa.text("released_at IS NULL")),  # one open rollout per device
)

rollout_events = sa.Table(  # a rollout's timeline
    "rollout_events", metadata,
    sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
    sa.Column("rollout_id", ROW_ID, sa.ForeignKey("rollouts.id", ondelete="CASCADE"),
              nullable=False),
    sa.Column("at", TIME, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("message", sa.String(512), nullable=False),
    sa.Column("figures", JSON),
    sa.Index(None, "rollout_id", "at"),
)
