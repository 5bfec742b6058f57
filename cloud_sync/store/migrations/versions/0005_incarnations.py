"""Device incarnations: dedupe and gap accounting per outbox incarnation (issue 17, item 2).

A device's seqs count in its outbox file; a new file (lost, re-imaged) starts them at 1
again under a new random ``incarnation`` (protocol 1.2). ``messages``, ``samples``,
``seq_gaps`` and ``seq_heads`` get the column (``""`` for every row before it, as for
messages without the field) and it joins their unique keys; ``devices.incarnation`` is
the newest one seen, whose statuses the registry follows. SQLite rebuilds the tables
whose keys change (Alembic's batch mode); PostgreSQL alters them in place.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04

Frozen once released, like 0001-0004 (types spelt out, not imported).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

KEYS = {  # table -> (unique key before, unique key after)
    "messages": (("device_id", "kind", "seq"), ("device_id", "incarnation", "kind", "seq")),
    "samples": (("device_id", "seq"), ("device_id", "incarnation", "seq")),
    "seq_gaps": (("device_id", "kind", "from_seq"),
                 ("device_id", "incarnation", "kind", "from_seq")),
}
HEAD_KEY = ("device_id", "kind")


def _incarnation() -> sa.Column:
    return sa.Column("incarnation", sa.String(32), server_default="", nullable=False)


def _uq(table: str, cols: tuple[str, ...]) -> str:
    return f"uq_{table}_{'_'.join(cols)}"


def upgrade() -> None:
    op.add_column("devices", _incarnation())
    for table, (old, new) in KEYS.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(_incarnation())
            batch.drop_constraint(_uq(table, old), type_="unique")
            batch.create_unique_constraint(_uq(table, new), list(new))
    with op.batch_alter_table("seq_heads") as batch:
        batch.add_column(_incarnation())
        batch.drop_constraint("pk_seq_heads", type_="primary")
        batch.create_primary_key("pk_seq_heads", ["device_id", "incarnation", "kind"])


def downgrade() -> None:
    """Back to one incarnation per device: of rows that would collide, the newest stays."""
    for table, (old, new) in KEYS.items():
        cols = ", ".join(old)
        op.execute(f"DELETE FROM {table} WHERE id NOT IN "
                   f"(SELECT max(id) FROM {table} GROUP BY {cols})")
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(_uq(table, new), type_="unique")
            batch.create_unique_constraint(_uq(table, old), list(old))
            batch.drop_column("incarnation")
    op.execute("DELETE FROM seq_heads WHERE EXISTS (SELECT 1 FROM seq_heads AS h "
               "WHERE h.device_id = seq_heads.device_id AND h.kind = seq_heads.kind AND "
               "(h.head > seq_heads.head OR (h.head = seq_heads.head "
               "AND h.incarnation > seq_heads.incarnation)))")
    with op.batch_alter_table("seq_heads") as batch:
        batch.drop_constraint("pk_seq_heads", type_="primary")
        batch.create_primary_key("pk_seq_heads", list(HEAD_KEY))
        batch.drop_column("incarnation")
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("incarnation")
