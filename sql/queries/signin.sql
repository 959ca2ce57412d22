-- The customer page's sign-in counters in PostgreSQL, for when no Redis is
-- configured for coordination. Each is a sliding window of event times
-- (epoch seconds, the database's clock) in coordination_slots.recent, keyed
-- by a hash of the number or address. One statement each: the row lock
-- serialises relays, so two cannot both take the last place.

-- name: signin_hit
-- Log one event unless %(limit)s are already within %(window_s)s seconds;
-- a row back means it was logged (allowed).
INSERT INTO public.coordination_slots AS c (name, value, recent)
VALUES (%(name)s, 0, ARRAY[extract(epoch FROM clock_timestamp())::float8])
ON CONFLICT (name) DO UPDATE
SET recent = ARRAY(SELECT x FROM unnest(c.recent) AS x
                   WHERE x > extract(epoch FROM clock_timestamp()) - %(window_s)s ORDER BY x)
             || extract(epoch FROM clock_timestamp())::float8,
    updated_at = now()
WHERE (SELECT count(*) FROM unnest(c.recent) AS x
       WHERE x > extract(epoch FROM clock_timestamp()) - %(window_s)s) < %(limit)s
RETURNING true AS allowed;

-- name: signin_clear
DELETE FROM public.coordination_slots WHERE name = %(name)s;

-- name: signin_prune
-- Windows are at most an hour: a row idle for a day holds nothing.
DELETE FROM public.coordination_slots
WHERE name LIKE 'regnotify:signin:%%' AND updated_at < now() - interval '1 day';

-- name: customer_subject
-- The random `sub` of regnotify's sessions for a number, made on its first
-- sign-in (migration 22). Never derived from the number.
INSERT INTO public.customer_subjects (phone) VALUES (%(phone)s)
ON CONFLICT (phone) DO UPDATE SET last_sign_in_at = now()
RETURNING subject::text AS subject;
