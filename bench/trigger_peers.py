"""The triggers `bench.trigger` measures ours against, installed in the bench's database only.

Two readings of the seed's trigger (never created by a migration): `seed`, the
bare SECURITY DEFINER upsert with a fixed 5-minute window, no pinned
search_path, fired on every UPDATE and testing the stage in its body; and
`seed_plan`, the same upsert pinned and fired only on a stage change, as the
seed plan lists it. And for the CPU profiles, a copy of ours without its
`SET search_path`, to price the pin, and `pinned_floor`, the least a pinned
trigger can do, to bound what any rewrite of the body could win back.
"""

from __future__ import annotations

import re

import psycopg
from psycopg.rows import tuple_row

TRIGGER = "trg_queue_status_notification"
SEED_TRIGGER = "trg_bench_seed_queue_status_notification"
SEED_PLAN_TRIGGER = "trg_bench_seed_plan_queue_status_notification"
UNPINNED_TRIGGER = "trg_bench_unpinned_queue_status_notification"
UNPINNED_FUNCTION = "public.bench_unpinned_queue_status_notification"
PINNED_FLOOR_TRIGGER = "trg_bench_pinned_floor_queue_status_notification"

#: The pgbench variants, each with the trigger it enables (None: all off).
VARIANTS: dict[str, str | None] = {"plain": None, "seed": SEED_TRIGGER,
                                   "seed_plan": SEED_PLAN_TRIGGER, "trigger": TRIGGER}
#: The CPU profiles' variants: those, ours without the pin, and the pinned floor.
CPU_VARIANTS: dict[str, str | None] = {**VARIANTS, "trigger_unpinned": UNPINNED_TRIGGER,
                                       "pinned_floor": PINNED_FLOOR_TRIGGER}

# The seed plan's trigger, as the plan gives it: a SECURITY DEFINER upsert
# with a fixed 5-minute window, no configuration row, no max-wait cap, no
# change_count and no pinned search_path, fired BEFORE every UPDATE of a
# registration and testing the stage in its body. Bench-only: created here,
# in the bench's throwaway database, never by a migration.
SEED_PEER_SQL = f"""
CREATE OR REPLACE FUNCTION public.bench_seed_queue_status_notification()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
AS $fn$
BEGIN
    IF NEW.current_stage IS DISTINCT FROM OLD.current_stage THEN
        INSERT INTO notification_queue
            (registration_id, old_stage, new_stage, send_after, notify_customer)
        VALUES
            (NEW.id, OLD.current_stage, NEW.current_stage, now() + interval '5 minutes',
             coalesce(NEW.pending_notify_customer, true))
        ON CONFLICT (registration_id) WHERE (sent = false) DO UPDATE
        SET new_stage       = EXCLUDED.new_stage,
            send_after      = EXCLUDED.send_after,
            notify_customer = EXCLUDED.notify_customer,
            updated_at      = now();
        NEW.pending_notify_customer := NULL;
    END IF;
    RETURN NEW;
END
$fn$;
REVOKE ALL ON FUNCTION public.bench_seed_queue_status_notification() FROM PUBLIC;
DROP TRIGGER IF EXISTS {SEED_TRIGGER} ON public.registrations;
CREATE TRIGGER {SEED_TRIGGER}
    BEFORE UPDATE ON public.registrations
    FOR EACH ROW
    EXECUTE FUNCTION public.bench_seed_queue_status_notification();
ALTER TABLE public.registrations DISABLE TRIGGER {SEED_TRIGGER};
"""

SEED_PEER_DROP_SQL = f"""
DROP TRIGGER IF EXISTS {SEED_TRIGGER} ON public.registrations;
DROP FUNCTION IF EXISTS public.bench_seed_queue_status_notification();
"""

# The seed plan's trigger as the seed plan lists it: "SECURITY DEFINER,
# fixed search_path, fires only when current_stage changes". So the same
# upsert as SEED_PEER_SQL, its names schema-qualified under an empty pinned
# search_path, and the stage test in the trigger's WHEN clause instead of
# the body. Bench-only, like the other peer.
SEED_PLAN_PEER_SQL = f"""
CREATE OR REPLACE FUNCTION public.bench_seed_plan_queue_status_notification()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $fn$
BEGIN
    INSERT INTO public.notification_queue
        (registration_id, old_stage, new_stage, send_after, notify_customer)
    VALUES
        (NEW.id, OLD.current_stage, NEW.current_stage, now() + interval '5 minutes',
         coalesce(NEW.pending_notify_customer, true))
    ON CONFLICT (registration_id) WHERE (sent = false) DO UPDATE
    SET new_stage       = EXCLUDED.new_stage,
        send_after      = EXCLUDED.send_after,
        notify_customer = EXCLUDED.notify_customer,
        updated_at      = now();
    NEW.pending_notify_customer := NULL;
    RETURN NEW;
END
$fn$;
REVOKE ALL ON FUNCTION public.bench_seed_plan_queue_status_notification() FROM PUBLIC;
DROP TRIGGER IF EXISTS {SEED_PLAN_TRIGGER} ON public.registrations;
CREATE TRIGGER {SEED_PLAN_TRIGGER}
    BEFORE UPDATE OF current_stage ON public.registrations
    FOR EACH ROW
    WHEN (OLD.current_stage IS DISTINCT FROM NEW.current_stage)
    EXECUTE FUNCTION public.bench_seed_plan_queue_status_notification();
ALTER TABLE public.registrations DISABLE TRIGGER {SEED_PLAN_TRIGGER};
"""

SEED_PLAN_PEER_DROP_SQL = f"""
DROP TRIGGER IF EXISTS {SEED_PLAN_TRIGGER} ON public.registrations;
DROP FUNCTION IF EXISTS public.bench_seed_plan_queue_status_notification();
"""

# A bound, not a trigger to run: the seed's own function and trigger, with
# the pin added and the one thing it does besides the upsert taken away (NEW
# is returned untouched, so pending_notify_customer is not consumed). It does
# strictly less than `seed` but for the pin, so `pinned_floor` - `seed` is the
# least a pinned body can cost over the unpinned seed: no rewrite of our body
# gets below it. Derived from SEED_PEER_SQL (see _pinned_floor_sql), so the two
# cannot drift apart. Bench-only, like the other peers.
_SEED_EDITS_FOR_FLOOR = (
    # The trigger's name holds the function's: rename it first.
    (SEED_TRIGGER, PINNED_FLOOR_TRIGGER),
    ("bench_seed_queue_status_notification", "bench_pinned_floor_queue_status_notification"),
    ("SECURITY DEFINER\n", "SECURITY DEFINER\nSET search_path = ''\n"),
    ("INSERT INTO notification_queue", "INSERT INTO public.notification_queue"),
    ("        NEW.pending_notify_customer := NULL;\n", ""),
)


def _pinned_floor_sql() -> str:
    sql = SEED_PEER_SQL
    for old, new in _SEED_EDITS_FOR_FLOOR:
        if old not in sql:
            raise RuntimeError(f"the seed peer no longer holds {old!r}: update the floor's edits")
        sql = sql.replace(old, new)
    return sql


PINNED_FLOOR_DROP_SQL = f"""
DROP TRIGGER IF EXISTS {PINNED_FLOOR_TRIGGER} ON public.registrations;
DROP FUNCTION IF EXISTS public.bench_pinned_floor_queue_status_notification();
"""

UNPINNED_DROP_SQL = f"""
DROP TRIGGER IF EXISTS {UNPINNED_TRIGGER} ON public.registrations;
DROP FUNCTION IF EXISTS {UNPINNED_FUNCTION}();
"""

# pg_get_functiondef prints the pin as its own line.
_PIN_LINE = re.compile(r"^ SET search_path TO ''\n", re.MULTILINE)


def install_seed_peer(conn: psycopg.Connection) -> None:
    """Create the seed's trigger (disabled) next to ours, in this database only."""
    conn.execute(SEED_PEER_SQL)


def drop_seed_peer(conn: psycopg.Connection) -> None:
    """Remove the seed's trigger and its function."""
    conn.execute(SEED_PEER_DROP_SQL)


def install_seed_plan_peer(conn: psycopg.Connection) -> None:
    """Create the seed plan's trigger as the plan lists it (disabled), in this database only."""
    conn.execute(SEED_PLAN_PEER_SQL)


def drop_seed_plan_peer(conn: psycopg.Connection) -> None:
    """Remove the seed plan's trigger and its function."""
    conn.execute(SEED_PLAN_PEER_DROP_SQL)


def install_unpinned_copy(conn: psycopg.Connection) -> None:
    """Copy our installed function and trigger, minus `SET search_path` (disabled).

    Copied from the catalog, so it is whatever the migrations last compiled,
    with only the pin taken out: the CPU difference is the pin's cost.
    """
    # A tuple row whatever the connection's row factory.
    ours = conn.cursor(row_factory=tuple_row).execute(
        "SELECT pg_get_functiondef('public.queue_status_notification()'::regprocedure),"
        " pg_get_triggerdef(t.oid) FROM pg_trigger t"
        " WHERE t.tgrelid = 'public.registrations'::regclass AND t.tgname = %s",
        (TRIGGER,)).fetchone()
    if ours is None:
        raise RuntimeError(f"{TRIGGER} is not installed: run the migrations first")
    function, trigger_def = ours
    unpinned, pins = _PIN_LINE.subn("", function)
    if pins != 1:
        raise RuntimeError("queue_status_notification() has no pinned search_path to take out")
    name = "CREATE OR REPLACE FUNCTION public.queue_status_notification()"
    if not unpinned.startswith(name):
        raise RuntimeError("unexpected definition of queue_status_notification(): "
                           + function.splitlines()[0])
    conn.execute(unpinned.replace(name, f"CREATE OR REPLACE FUNCTION {UNPINNED_FUNCTION}()", 1))
    conn.execute(f"REVOKE ALL ON FUNCTION {UNPINNED_FUNCTION}() FROM PUBLIC")
    # Same events, columns and WHEN as ours; only the name and the function differ.
    copy, renamed = re.subn(rf"^CREATE TRIGGER {TRIGGER} ", f"CREATE TRIGGER {UNPINNED_TRIGGER} ",
                            trigger_def)
    copy, retargeted = re.subn(r"EXECUTE FUNCTION \S+\(\)$",
                               f"EXECUTE FUNCTION {UNPINNED_FUNCTION}()", copy)
    if (renamed, retargeted) != (1, 1):
        raise RuntimeError(f"unexpected definition of {TRIGGER}: {trigger_def}")
    conn.execute(f"DROP TRIGGER IF EXISTS {UNPINNED_TRIGGER} ON public.registrations")
    conn.execute(copy)
    conn.execute(f"ALTER TABLE public.registrations DISABLE TRIGGER {UNPINNED_TRIGGER}")


def drop_unpinned_copy(conn: psycopg.Connection) -> None:
    """Remove the unpinned copy and its trigger."""
    conn.execute(UNPINNED_DROP_SQL)


def install_peers(conn: psycopg.Connection) -> None:
    """Every bench-only trigger, disabled: both seed peers, the unpinned copy, the floor."""
    install_seed_peer(conn)
    install_seed_plan_peer(conn)
    install_unpinned_copy(conn)
    conn.execute(_pinned_floor_sql())


def drop_peers(conn: psycopg.Connection) -> None:
    """Remove every bench-only trigger and function."""
    conn.execute(PINNED_FLOOR_DROP_SQL)
    drop_unpinned_copy(conn)
    drop_seed_plan_peer(conn)
    drop_seed_peer(conn)
