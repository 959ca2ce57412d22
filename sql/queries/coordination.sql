-- Shared coordination state in PostgreSQL, for when no Redis is configured
-- for it: the PostgreSQL engine of tasks.coordination.store (db/coordination.py).
-- Times are epoch seconds on the database's clock (clock_timestamp: a long
-- transaction must not freeze it). Each statement is one atomic step.

-- name: rate_reserve
-- GCRA: take the next free slot if it is no more than %(max_wait)s away.
-- Returns granted and how long to wait for the slot (or, when not granted,
-- about how long until one would be within reach).
WITH now_s AS (
    SELECT extract(epoch FROM clock_timestamp())::float8 AS e
),
ensure AS (
    INSERT INTO public.coordination_slots (name, value)
    VALUES (%(name)s, 0)
    ON CONFLICT (name) DO NOTHING
),
taken AS (
    UPDATE public.coordination_slots AS c
    SET value = greatest(c.value, n.e) + %(interval)s, updated_at = now()
    FROM now_s AS n
    WHERE c.name = %(name)s
      AND greatest(c.value, n.e) - %(tolerance)s - n.e <= %(max_wait)s
    RETURNING greatest(c.value - %(interval)s - %(tolerance)s - n.e, 0) AS wait
)
SELECT true AS granted, wait FROM taken
UNION ALL
SELECT false, greatest(c.value - %(tolerance)s - n.e, 0)
FROM public.coordination_slots AS c, now_s AS n
WHERE c.name = %(name)s AND NOT EXISTS (SELECT 1 FROM taken);

-- name: rate_defer
-- A provider said "not before %(seconds)s from now": nobody gets a slot sooner.
INSERT INTO public.coordination_slots (name, value)
VALUES (%(name)s, extract(epoch FROM clock_timestamp()) + %(seconds)s)
ON CONFLICT (name) DO UPDATE
SET value = greatest(public.coordination_slots.value, EXCLUDED.value), updated_at = now();

-- name: marker_set_if_absent
-- SET NX EX: true when this caller set the marker (none, or an expired one).
INSERT INTO public.coordination_slots AS c (name, value)
VALUES (%(name)s, extract(epoch FROM clock_timestamp()) + %(ttl_s)s)
ON CONFLICT (name) DO UPDATE
SET value = EXCLUDED.value, updated_at = now()
WHERE c.value < extract(epoch FROM clock_timestamp())
RETURNING true AS set;

-- name: marker_set
-- SET EX: set the marker whatever it held.
INSERT INTO public.coordination_slots AS c (name, value)
VALUES (%(name)s, extract(epoch FROM clock_timestamp()) + %(ttl_s)s)
ON CONFLICT (name) DO UPDATE
SET value = EXCLUDED.value, updated_at = now();

-- name: marker_clear
UPDATE public.coordination_slots SET value = 0, updated_at = now() WHERE name = %(name)s;

-- name: coordination_forget
-- Whatever the name holds: a marker, a gate's entries, a slot, or a group
-- of counters (the rows named %(group)s<field>).
DELETE FROM public.coordination_slots
WHERE name = %(name)s OR starts_with(name, %(group)s);

-- name: wake_arm
-- Arm a wake-up %(countdown_s)s from now unless one is armed at or before
-- it and still ahead. A row back means the caller must schedule the run.
INSERT INTO public.coordination_slots AS c (name, value)
VALUES (%(name)s, extract(epoch FROM clock_timestamp()) + %(countdown_s)s)
ON CONFLICT (name) DO UPDATE
SET value = EXCLUDED.value, updated_at = now()
WHERE NOT (c.value > extract(epoch FROM clock_timestamp())
           AND c.value <= EXCLUDED.value + 0.05)
RETURNING true AS armed;

-- name: gate_depart
-- The departure gate: `recent` holds the calls out or answered within the
-- last %(window_s)s seconds (with %(hold_s)s 0, a plain sliding window: the
-- sign-in counters). When fewer than %(limit)s are in it, log this
-- one %(hold_s)s seconds ahead (it holds its place while it is out; see
-- gate_landed) and answer 0 with that time; otherwise answer how long until
-- the oldest leaves the window. The row lock serialises callers, so two
-- cannot both take the last place.
WITH now_s AS (
    SELECT extract(epoch FROM clock_timestamp())::float8 AS e
),
ensure AS (
    INSERT INTO public.coordination_slots (name, value, recent)
    VALUES (%(name)s, 0, '{}')
    ON CONFLICT (name) DO NOTHING
),
admitted AS (
    UPDATE public.coordination_slots AS c
    -- The time logged is taken after the row lock: a caller that waited
    -- for it leaves later than the statement began.
    SET recent = ARRAY(SELECT x FROM unnest(c.recent) AS x WHERE x > n.e - %(window_s)s
                       ORDER BY x)
                 || (extract(epoch FROM clock_timestamp())::float8 + %(hold_s)s),
        updated_at = now()
    FROM now_s AS n
    WHERE c.name = %(name)s
      AND (SELECT count(*) FROM unnest(c.recent) AS x WHERE x > n.e - %(window_s)s) < %(limit)s
    RETURNING 0::float8 AS wait, c.recent[array_upper(c.recent, 1)] AS logged_at
)
SELECT wait, logged_at FROM admitted
UNION ALL
SELECT coalesce((SELECT min(x) FROM unnest(c.recent) AS x WHERE x > n.e - %(window_s)s)
                + %(window_s)s - n.e, 0.01), NULL::float8
FROM public.coordination_slots AS c, now_s AS n
WHERE c.name = %(name)s AND NOT EXISTS (SELECT 1 FROM admitted);

-- name: gate_landed
-- A call's answer is back: the time it was logged under (%(logged_at)s,
-- still ahead while it was out) becomes this moment.
UPDATE public.coordination_slots
SET recent = array_replace(recent, %(logged_at)s::float8,
                           extract(epoch FROM clock_timestamp())::float8),
    updated_at = now()
WHERE name = %(name)s;

-- name: gate_prune
-- A gate's window is at most an hour and its hold minutes: a row idle for a
-- day holds nothing (sign-in counters are keyed by number and address, so
-- their rows would otherwise pile up). Markers, slots and counters keep
-- `recent` empty and are left alone.
DELETE FROM public.coordination_slots
WHERE cardinality(recent) > 0 AND updated_at < now() - interval '1 day';

-- name: counters_add
-- Add %(amounts)s to the counters %(names)s (one row each: group#field).
-- In name order, so two workers flushing at once lock rows alike.
INSERT INTO public.coordination_slots AS c (name, value)
SELECT n, v FROM unnest(%(names)s::text[], %(amounts)s::float8[]) AS u(n, v) ORDER BY n
ON CONFLICT (name) DO UPDATE
SET value = c.value + EXCLUDED.value, updated_at = now();

-- name: counters_read
-- Every counter of one group: the rows named %(prefix)s<field>.
SELECT substr(name, length(%(prefix)s) + 1) AS field, value
FROM public.coordination_slots
WHERE starts_with(name, %(prefix)s);
