-- 23 One clock for the send path, which tests can move.
--
-- public.regnotify_now() is now(), moved by the optional setting
-- regnotify.clock_offset_s (seconds, may be negative). Production never sets
-- it, so it reads the real clock. The model test of the send path
-- (tests/test_send_path_model.py) sets it for its database to put "now" at a
-- quiet-hours edge in the customer's zone, the same clock the Python seam
-- (tasks/clock.py) reads.
--
-- The send claims (sql/queries/deliveries.sql, claim_delivery) read it to
-- check quiet hours again at the moment of the claim: a retry or a parked
-- delivery that becomes due after the window opened in the customer's zone
-- waits for the window to close instead of leaving at night.
--
-- A session that sets the offset moves only its own statements' clock: the
-- workers never set it, so no caller can move another's.

CREATE OR REPLACE FUNCTION public.regnotify_now()
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT pg_catalog.now() + pg_catalog.make_interval(secs => coalesce(
        NULLIF(pg_catalog.current_setting('regnotify.clock_offset_s', true), '')
            ::float8, 0))
$fn$;

-- When the quiet window the customer is in at regnotify_now() opens again,
-- as an instant on the server's own clock (the one every stored time and
-- every `<= now()` comparison uses): the offset moves the wall clock the
-- customer's zone is read on, never the stored times.
CREATE OR REPLACE FUNCTION public.quiet_hours_release_now(p_zone text, p_start time, p_end time)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT public.quiet_hours_release_at(public.regnotify_now(), p_zone, p_start, p_end)
           - (public.regnotify_now() - pg_catalog.now())
$fn$;

REVOKE ALL ON FUNCTION public.regnotify_now() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.regnotify_now() TO service_role;
REVOKE ALL ON FUNCTION public.quiet_hours_release_now(text, time, time)
    FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.quiet_hours_release_now(text, time, time) TO service_role;

-- The Idempotency-Key a staff reply digest first went to Resend under. A
-- digest whose send died after Resend accepted it must go again under that
-- same key (with the same companions), never grouped anew under a new key:
-- the key was a hash of whichever digests were due together, so a queue run
-- that added a newer digest sent the older ones twice.
ALTER TABLE public.reply_digests ADD COLUMN IF NOT EXISTS idempotency_key text;
