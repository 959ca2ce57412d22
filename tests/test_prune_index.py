"""The processed-queue prune reads an index (migration 14): with a million
processed rows kept and none due, a run touches a handful of pages, not the
table."""

from __future__ import annotations

import json

from tests.pg import new_registration

#: The statement the function's processed-queue step runs, word for word
#: (EXPLAIN cannot look inside a PL/pgSQL function).
STEP = """
SELECT o.id FROM public.notification_queue AS o
WHERE o.sent
  AND coalesce(o.processed_at, o.updated_at)
      < pg_catalog.now() - (SELECT retain_processed_queue FROM public.notification_config)
ORDER BY coalesce(o.processed_at, o.updated_at)
LIMIT 5000
FOR UPDATE SKIP LOCKED
"""


def plan_ms(plan: dict) -> float:
    doc = next(iter(plan.values()))
    return float((json.loads(doc) if isinstance(doc, str) else doc)[0]["Execution Time"])


def _plan_nodes(node: dict) -> list[dict]:
    return [node] + [n for child in node.get("Plans", []) for n in _plan_nodes(child)]


def _table_reads(conn) -> dict:
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT pg_stat_clear_snapshot()")
    return conn.execute(
        "SELECT seq_scan, seq_tup_read, coalesce(idx_tup_fetch, 0) AS idx_tup_fetch "
        "FROM pg_stat_user_tables WHERE relid = 'public.notification_queue'::regclass"
    ).fetchone()


def test_a_prune_with_nothing_due_touches_a_bounded_number_of_rows(conn):
    reg = new_registration(conn)
    # A million processed rows, all younger than the 30-day age: kept.
    conn.execute(
        "INSERT INTO notification_queue (registration_id, old_stage, new_stage, send_after, "
        "sent, processed_at, closed_reason, created_at, updated_at) "
        "SELECT %s, 'sale_complete', 'documents_collected', now() - g * interval '1 second', "
        "true, now() - g * interval '1 second', 'processed', now() - g * interval '1 second', "
        "now() - g * interval '1 second' FROM generate_series(1, 1000000) AS g", (reg,))
    conn.execute("ANALYZE notification_queue")

    plan = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {STEP}").fetchone()
    doc = next(iter(plan.values()))
    top = (json.loads(doc) if isinstance(doc, str) else doc)[0]["Plan"]
    nodes = _plan_nodes(top)
    scans = [n for n in nodes if n["Node Type"].endswith("Scan")
             and n.get("Relation Name") == "notification_queue"]
    assert scans and all(n["Node Type"] != "Seq Scan" for n in scans), scans
    assert any(n.get("Index Name") == "ix_notification_queue_processed" for n in scans), scans
    assert all(n["Actual Rows"] == 0 for n in scans), scans
    buffers = top["Shared Hit Blocks"] + top["Shared Read Blocks"]
    print(json.dumps({"kept_rows": 1_000_000, "buffers": buffers,
                      "execution_ms": plan_ms(plan)}))
    assert buffers < 20, f"{buffers} buffers for a prune with nothing due"

    # The function itself: no sequential scan, a bounded number of rows fetched.
    before = _table_reads(conn)
    deleted = {r["kind"]: r["deleted"]
               for r in conn.execute("SELECT * FROM prune_notifications(5000)")}
    after = _table_reads(conn)
    assert deleted["processed_queue"] == 0
    assert after["seq_scan"] == before["seq_scan"]
    assert after["seq_tup_read"] == before["seq_tup_read"]
    assert after["idx_tup_fetch"] - before["idx_tup_fetch"] < 10, (before, after)


def test_a_due_row_still_goes_oldest_first(conn):
    reg = new_registration(conn)
    conn.execute(
        "INSERT INTO notification_queue (registration_id, old_stage, new_stage, send_after, "
        "sent, processed_at, closed_reason, created_at, updated_at) "
        "SELECT %s, 'sale_complete', 'documents_collected', now(), true, "
        "now() - g * interval '1 day', 'processed', now(), now() "
        "FROM generate_series(1, 40) AS g", (reg,))
    deleted = {r["kind"]: r["deleted"]
               for r in conn.execute("SELECT * FROM prune_notifications(3)")}
    assert deleted["processed_queue"] == 3
    oldest_left = conn.execute(
        "SELECT max(now() - processed_at) AS age FROM notification_queue WHERE sent"
    ).fetchone()["age"]
    assert oldest_left.days == 37  # 40, 39 and 38 days old went first
