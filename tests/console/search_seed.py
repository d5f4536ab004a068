"""Many messages at once for plans and benchmarks (PostgreSQL): ``generate_series`` in one statement."""

from __future__ import annotations

from sqlalchemy import Engine, text

__all__ = ["seed_messages"]

STATUSES = ["acknowledged"] * 12 + ["rejected", "dead", "retry_wait", "received"]
TARGETS = ["bauamt-dms", "gewerberegister", "kfz-register", "steueramt"]


def seed_messages(engine: Engine, rows: int) -> None:
    """``rows`` messages over two towns (one in ten is kempten's), a year of creation times, each status and
    each id filled, with one delivery each; then ANALYZE."""
    statuses = "ARRAY[" + ",".join(f"'{s}'" for s in STATUSES) + "]"
    targets = "ARRAY[" + ",".join(f"'{t}'" for t in TARGETS) + "]"
    with engine.begin() as conn:
        conn.execute(text(f"""
            INSERT INTO messages (id, tenant, channel, sender, sender_reference, external_id, case_id,
                xoev_message_uuid, standard, message_type, route, content_type, payload_size, payload_sha256,
                status, attempts, next_attempt_at, created_at, updated_at)
            SELECT gen_random_uuid(), CASE WHEN i % 10 = 0 THEN 'kempten' ELSE 'memmingen' END,
                CASE WHEN i % 3 = 0 THEN 'fitconnect' ELSE 'rest' END, 'portal', 'ref-' || i,
                CASE WHEN i % 3 = 0 THEN 'sub-' || i END, CASE WHEN i % 3 = 0 THEN 'case-' || (i / 2) END,
                md5(i::text), 'xbau', 'baugenehmigung.antrag.0200', 'bauaufsicht', 'application/xml', 1000,
                md5(i::text) || md5(i::text), ({statuses})[1 + i % {len(STATUSES)}], 0,
                now(), timestamptz '2026-01-01' + (i * interval '157 seconds'), now()
            FROM generate_series(1, :rows) AS i
        """), {"rows": rows})
        conn.execute(text(f"""
            INSERT INTO deliveries (message_id, target, status, idempotency_key, attempts, created_at, updated_at)
            SELECT id, ({targets})[1 + abs(hashtext(id::text)) % {len(TARGETS)}], 'delivered',
                   'k-' || id, 1, created_at, created_at
            FROM messages
        """))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE messages"))
        conn.execute(text("ANALYZE deliveries"))
