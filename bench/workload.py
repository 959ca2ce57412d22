"""Rows for the benchmarks: registrations, due queue rows, and a clean slate between scenarios.

Everything is generated in SQL (generate_series), so seeding 100 000 rows
takes a second or two instead of being a benchmark of its own. Registration
ids are `md5('bench' || n)::uuid`, so pgbench can address row n without a
lookup table.
"""

from __future__ import annotations

import psycopg

#: Truncated between scenarios; CASCADE reaches the queue and the audit.
BENCH_TABLES = ("registrations", "notification_queue", "registration_notifications",
                "sms_opt_outs")


def registration_id_sql(n: str) -> str:
    """SQL for the id of bench registration `n` (an SQL expression or a pgbench variable)."""
    return f"md5('bench' || ({n})::text)::uuid"


def reset(conn: psycopg.Connection) -> None:
    """Empty the tables a scenario writes and restore the default debounce window."""
    conn.execute("TRUNCATE " + ", ".join(f"public.{t}" for t in BENCH_TABLES) + " CASCADE")
    conn.execute("UPDATE public.notification_config SET debounce_window = interval '5 minutes',"
                 " max_wait = interval '30 minutes'")
    # Quiet hours off: a benchmark run at night would otherwise hold every text.
    conn.execute("UPDATE public.notification_config SET quiet_hours_channels = '{}'")


def seed_registrations(conn: psycopg.Connection, count: int, *, pref: str = "both") -> None:
    """`count` registrations with a phone and an e-mail each, at stage sale_complete."""
    conn.execute(
        f"""
        INSERT INTO public.registrations
            (id, customer_name, customer_phone, customer_email, vehicle_year, vehicle_make,
             vehicle_model, notification_pref)
        SELECT {registration_id_sql('i')}, 'Customer ' || i,
               '+1555' || lpad(i::text, 7, '0'), 'customer' || i || '@example.com',
               2019, 'Toyota', 'Corolla', %(pref)s
        FROM generate_series(1, %(count)s) AS i
        """,
        {"count": count, "pref": pref},
    )
    conn.execute("ANALYZE public.registrations")


def seed_due(conn: psycopg.Connection, count: int, *, offset: int = 0) -> None:
    """One due queue row (a stage change due a minute ago) for `count` registrations.

    `offset` skips the first registrations, so successive batches message
    different customers (the wires flag a repeated message to one customer
    as a duplicate).

    Inserted directly rather than through the trigger: the claim and send
    scenarios measure what happens after the debounce, not the UPDATEs.
    """
    conn.execute(
        """
        INSERT INTO public.notification_queue
            (registration_id, old_stage, new_stage, send_after)
        SELECT r.id, 'sale_complete', 'documents_collected',
               now() - interval '1 minute' + make_interval(secs => row_number() OVER () / 1e6)
        FROM (SELECT id FROM public.registrations ORDER BY customer_phone
              LIMIT %(count)s OFFSET %(offset)s) AS r
        """,
        {"count": count, "offset": offset},
    )
    conn.execute("ANALYZE public.notification_queue")


def fresh(url: str, registrations: int, due: int = 0) -> None:
    """Reset, then seed `registrations` registrations of which `due` have a due queue row."""
    with psycopg.connect(url, autocommit=True) as conn:
        reset(conn)
        seed_registrations(conn, registrations)
        if due:
            seed_due(conn, due)
        conn.execute("VACUUM (ANALYZE) public.registration_notifications")
