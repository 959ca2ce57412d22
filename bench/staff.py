"""The staff console's queries at size: 200k registrations, 1M messages, 20k replies.

Fills a private PostgreSQL (or a scratch database given with --database-url)
with INSERT ... SELECT over generate_series, then runs each query of the
console exactly as the relay does (as `authenticated` with an active staff
member's claims, row-level security on, sql/queries/staff.sql) under
EXPLAIN (ANALYZE, BUFFERS) and prints, per query, the median execution time
at the database over a few runs, whether any big table was read in full
(a Seq Scan), and the plan of the last run.

    python -m bench.staff                 # 1M messages, private PostgreSQL
    python -m bench.staff --messages 100000 --registrations 20000
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from db.connection import libpq_url
from db.queries import query
from tasks.local.embedded_postgres import EmbeddedPostgres, free_port

STAFF = "bench@dealer.example"
CLAIMS = {"sub": "bench", "role": "authenticated", "email": STAFF,
          "app_metadata": {"role": "admin"}, "iss": "regnotify", "aud": "authenticated"}
TARGET_MS = 50.0
RUNS = 5
BIG = ("registrations", "registration_notifications", "inbound_messages")

SEED = """
INSERT INTO public.registrations
    (id, customer_name, customer_phone, customer_email, vin, vehicle_year, vehicle_make,
     vehicle_model, current_stage, created_at)
SELECT md5('r' || i)::uuid,
       (ARRAY['Ana','Ben','Carla','Diego','Elena','Frank','Gina','Hector','Iris','Jamal',
              'Kim','Luis','Maria','Nora','Omar','Paula','Quinn','Rosa','Sam','Tariq'])[1 + i %% 20]
       || ' ' ||
       (ARRAY['Lo','Gar','Mar','Her','Ro','Ngu','Smi','Wil','John','Da','Bro','Mil','Ta',
              'An','Tho','Ja','Whi','Har','San','Cla','Ra','Le','Wal','Hal','Al'])
           [1 + (i / 20) %% 25]
       ||
       (ARRAY['pez','cia','tinez','nandez','driguez','yen','th','liams','son','vis','wn',
              'ler','ylor','derson','mas','ckson','te','ris','chez','rk'])[1 + (i / 500) %% 20],
       '+1713' || lpad(i::text, 7, '0'),
       'c' || i || '@example.com',
       upper(substr(md5('v' || i), 1, 17)),
       2015 + i %% 10, 'Toyota', 'Corolla',
       (ARRAY['sale_complete','documents_collected','submitted_to_dmv','dmv_processing',
              'sticker_ready','sticker_delivered'])[1 + i %% 6],
       now() - make_interval(secs => (%(regs)s - i) * 150)
FROM generate_series(1, %(regs)s) AS i;

INSERT INTO public.registration_notifications
    (registration_id, channel, recipient, status, attempts, error_code, error_message,
     skip_reason, outcome_unknown, old_stage, new_stage, created_at, updated_at, sent_at)
SELECT md5('r' || (1 + g %% %(regs)s))::uuid,
       CASE WHEN g %% 2 = 0 THEN 'sms' ELSE 'email' END,
       CASE WHEN g %% 2 = 0 THEN '+1713' || lpad((1 + g %% %(regs)s)::text, 7, '0')
            ELSE 'c' || (1 + g %% %(regs)s) || '@example.com' END,
       s.status, 1,
       CASE s.status WHEN 'failed' THEN CASE WHEN g %% 7 = 0 THEN 'outcome_unknown'
                                             ELSE '30003' END
                     WHEN 'bounced' THEN 'bounce' END,
       CASE s.status WHEN 'failed' THEN 'Unreachable destination handset' END,
       CASE WHEN s.status = 'skipped' THEN CASE WHEN g %% 3 = 0 THEN 'opted_out'
                                                ELSE 'preference' END END,
       s.status = 'failed' AND g %% 7 = 0,
       'documents_collected', 'submitted_to_dmv',
       now() - make_interval(secs => (%(msgs)s - g) * 30),
       now() - make_interval(secs => (%(msgs)s - g) * 30),
       CASE WHEN s.status IN ('sent', 'delivered')
            THEN now() - make_interval(secs => (%(msgs)s - g) * 30) END
FROM generate_series(1, %(msgs)s) AS g
CROSS JOIN LATERAL (SELECT CASE
    WHEN g %% 1000 < 20 THEN 'failed'
    WHEN g %% 1000 < 25 THEN 'bounced'
    WHEN g %% 1000 < 27 THEN 'complained'
    WHEN g %% 1000 < 80 THEN 'skipped'
    WHEN g %% 1000 < 200 THEN 'sent'
    ELSE 'delivered' END AS status) AS s;

INSERT INTO public.inbound_messages (message_sid, from_phone, body, received_at,
                                     registration_id, handled_at)
SELECT 'SMbench' || g, '+1713' || lpad((1 + g * 7 %% %(regs)s)::text, 7, '0'),
       'When are my plates ready?', now() - make_interval(secs => (%(replies)s - g) * 600),
       md5('r' || (1 + g * 7 %% %(regs)s))::uuid,
       CASE WHEN g %% 10 <> 0 THEN now() END
FROM generate_series(1, %(replies)s) AS g;

INSERT INTO public.staff_members (email, name) VALUES ('bench@dealer.example', 'Bench')
ON CONFLICT (email) DO NOTHING;
"""


def _cases(conn: psycopg.Connection) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, query name, parameters) for each search and page the console runs."""
    none = {"status": None, "channel": None, "since": None, "until": None,
            "before_at": None, "before_id": None, "limit": 51,
            "phone": None, "email": None, "vin": None, "name": None}
    middle = conn.execute(
        "SELECT created_at, id FROM registration_notifications ORDER BY created_at DESC, id DESC "
        "OFFSET least(5000, (SELECT count(*) / 2 FROM registration_notifications)) LIMIT 1"
    ).fetchone()
    assert middle is not None
    vin = conn.execute("SELECT vin FROM registrations ORDER BY id OFFSET least(777, (SELECT "
                       "count(*) / 2 FROM registrations)) LIMIT 1").fetchone()
    assert vin is not None
    return [
        ("first page of messages", "staff_messages", none),
        ("page 101 by keyset", "staff_messages",
         {**none, "before_at": middle[0], "before_id": middle[1]}),
        ("status = failed", "staff_messages", {**none, "status": "failed"}),
        ("channel = email, one week", "staff_messages",
         {**none, "channel": "email", "since": "2026-01-01", "until": "2026-01-08"}),
        ("search: phone (713) 555-…", "staff_messages_found",
         {**none, "phone": "+17130012345"}),
        ("search: e-mail", "staff_messages_found", {**none, "email": "c4242@example.com"}),
        ("search: VIN start (8)", "staff_messages_found", {**none, "vin": vin[0][:8]}),
        ("search: full name", "staff_messages_found",
         {**none, "name": "'maria':* & 'lopez':*"}),
        ("search: surname", "staff_messages_found", {**none, "name": "'garcia':*"}),
        ("search: surname + failed", "staff_messages_found",
         {**none, "name": "'garcia':*", "status": "failed"}),
        ("header: attention count", "staff_attention_count", {}),
        ("attention: deliveries", "staff_attention_deliveries", {}),
        ("attention: replies", "staff_attention_replies", {}),
        ("replies: not handled", "staff_replies", {"handled": False}),
        ("queue: held", "staff_queue_held", {}),
    ]


def _as_staff(conn: psycopg.Connection) -> None:
    conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (json.dumps(CLAIMS),))
    conn.execute("SET LOCAL ROLE authenticated")
    conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")


def measure(url: str) -> list[dict[str, Any]]:
    results = []
    with psycopg.connect(libpq_url(url)) as conn:
        cases = _cases(conn)
        conn.rollback()
        # The searches' own statements run inside find_registrations (PL/pgSQL):
        # auto_explain shows their plans too, as LOG messages sent to this client.
        inner: list[str] = []
        conn.add_notice_handler(lambda d: inner.append(d.message_primary or ""))
        for label, name, params in cases:
            times, plan = [], ""
            # RUNS timed runs, then one more with auto_explain for the nested plans
            # (its instrumentation would slow the timed ones).
            for run in range(RUNS + 1):
                inner.clear()
                if run == RUNS:
                    try:
                        conn.execute("LOAD 'auto_explain'")
                        conn.execute("SET LOCAL auto_explain.log_min_duration = 0")
                        conn.execute("SET LOCAL auto_explain.log_nested_statements = on")
                        conn.execute("SET LOCAL auto_explain.log_analyze = on")
                        conn.execute("SET LOCAL client_min_messages = log")
                    except psycopg.Error:
                        conn.rollback()  # not a superuser here: the outer plans only
                _as_staff(conn)
                rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + query(name),
                                    params).fetchall()
                conn.rollback()
                text = "\n".join(r[0] for r in rows)
                if run < RUNS:
                    plan = text
                    found = re.search(r"Execution Time: ([\d.]+) ms", text)
                    assert found, text
                    times.append(float(found.group(1)))
                nested = [m for m in inner
                          if "Query Text: SELECT r.id FROM public.registrations" in m]
                if nested:
                    plan += "\n\ninside find_registrations:\n" + "\n".join(nested)
            # A Seq Scan that ran (an RLS branch that never did is no cost).
            seq = sorted({t for t in BIG if re.search(
                rf"Seq Scan on {t}\b[^\n]*\(actual (time|rows)", plan)})
            results.append({"query": label, "name": name, "median_ms": statistics.median(times),
                            "max_ms": max(times), "seq_scans": seq, "plan": plan})
    return results


def seed(url: str, registrations: int, messages: int, replies: int) -> float:
    started = time.perf_counter()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        params = {"regs": registrations, "msgs": messages, "replies": replies}
        for statement in SEED.split(";\n\n"):
            if statement.strip():
                conn.execute(statement, params)
        conn.execute("VACUUM ANALYZE registrations, registration_notifications, "
                     "inbound_messages")
    return time.perf_counter() - started


def _private_cluster(root: Path) -> EmbeddedPostgres:
    from db.install.migrations import migrate

    pg = EmbeddedPostgres(data_dir=root / "pg", port=free_port(), database="regnotify_bench")
    pg.chown(root)
    pg.start()
    migrate(pg.url)
    return pg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.staff", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registrations", type=int, default=200_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--replies", type=int, default=20_000)
    parser.add_argument("--database-url", help="a migrated scratch database (rows are added); "
                        "default: a private PostgreSQL")
    parser.add_argument("--plans", action="store_true", help="print every plan in full")
    args = parser.parse_args(argv)
    root: Path | None = None
    pg: EmbeddedPostgres | None = None
    try:
        if args.database_url:
            url = args.database_url
        else:
            root = Path(tempfile.mkdtemp(prefix="regnotify-bench-staff-"))
            pg = _private_cluster(root)
            url = pg.url
        seconds = seed(url, args.registrations, args.messages, args.replies)
        print(f"seeded {args.registrations:,} registrations, {args.messages:,} messages, "
              f"{args.replies:,} replies in {seconds:.1f}s", flush=True)
        results = measure(url)
    finally:
        if pg is not None:
            pg.stop("fast")
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{'query':34} {'median ms':>10} {'max ms':>8}  full scans")
    for r in results:
        flag = "" if r["median_ms"] <= TARGET_MS else f"  over {TARGET_MS:.0f} ms"
        print(f"{r['query']:34} {r['median_ms']:10.2f} {r['max_ms']:8.2f}  "
              f"{', '.join(r['seq_scans']) or 'none'}{flag}")
    for r in results:
        if args.plans or r["seq_scans"] or r["median_ms"] > TARGET_MS:
            print(f"\n── {r['query']} ({r['name']})\n{r['plan']}")
    print(json.dumps({"target_ms": TARGET_MS, "results": [
        {k: v for k, v in r.items() if k != "plan"} for r in results]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
