-- 15 A burst that opens wakes the relay, so a short debounce window does not
-- wait for the next tick. The wake-up at send_after is armed by a queue run
-- (tasks/wakeup.py); before this file the first run after a burst opened was
-- the next pg_cron minute, so a 5-second window could leave ~60 s late.
--
-- The trigger now sends NOTIFY notification_tick when its upsert INSERTS a
-- queue row (change_count = 1: a new burst), never when it folds a change into
-- a pending row (that row's wake-up is already armed or its tick already due).
-- The relay LISTENs on that channel (tasks/relay/listener.py) and requests a
-- coalesced run; the run finds nothing due yet and arms the wake-up at the
-- new row's send_after. NOTIFY is delivered at commit, so the run sees the row.
-- Identical payloads are folded per transaction, so a bulk UPDATE of many
-- registrations sends one notification. A relay reached only by pg_net
-- (no LISTEN) still wakes on the minute tick, as before.
--
-- Everything else is 08's template unchanged: SECURITY DEFINER, the pinned
-- search_path, the upsert on uq_pending_notification, the first old_stage of
-- a burst, change_count, the max_wait cap, pending_notify_customer consumed.
-- Safe to run twice; runs as the database owner, no superuser.

CREATE OR REPLACE FUNCTION public.compile_queue_status_notification()
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $compile$
DECLARE
    v_window interval;
    v_max    interval;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtext('regnotify.compile_queue_status_notification'));
    SELECT c.debounce_window, c.max_wait INTO v_window, v_max
    FROM public.notification_config c
    WHERE c.id;
    -- No row: the defaults, as the lookup in 04 had.
    v_window := coalesce(v_window, interval '5 minutes');
    v_max := coalesce(v_max, interval '30 minutes');

    EXECUTE pg_catalog.format($ddl$
CREATE OR REPLACE FUNCTION public.queue_status_notification()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
-- Empty: every name below is schema-qualified, so a caller's search_path
-- cannot redirect this definer-rights function to objects of their own.
SET search_path = ''
AS $fn$
-- Written by public.compile_queue_status_notification() from
-- notification_config (debounce_window %1$s, max_wait %2$s); a change to
-- those columns rewrites it. Edit the template there, not this copy.
DECLARE
    v_changes int;
BEGIN
    IF NEW.current_stage IS DISTINCT FROM OLD.current_stage THEN
        INSERT INTO public.notification_queue AS q
            (registration_id, old_stage, new_stage, send_after, notify_customer)
        VALUES
            (NEW.id, OLD.current_stage, NEW.current_stage, now() + %1$L::interval,
             coalesce(NEW.pending_notify_customer, true))
        ON CONFLICT (registration_id) WHERE (sent = false) DO UPDATE
        SET new_stage       = EXCLUDED.new_stage,
            -- The burst's first change started the clock: keep changing and
            -- the message still leaves by created_at + max_wait.
            send_after      = least(EXCLUDED.send_after, q.created_at + %2$L::interval),
            notify_customer = EXCLUDED.notify_customer,
            change_count    = q.change_count + 1,
            updated_at      = EXCLUDED.updated_at
        RETURNING q.change_count INTO v_changes;

        -- A new burst: wake the relay so a run arms the wake-up at its
        -- send_after now, not at the next tick.
        IF v_changes = 1 THEN
            PERFORM pg_catalog.pg_notify('notification_tick', '{"source": "burst"}');
        END IF;

        NEW.pending_notify_customer := NULL;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$fn$
$ddl$, v_window, v_max);
END
$compile$;

REVOKE ALL ON FUNCTION public.compile_queue_status_notification()
    FROM PUBLIC, anon, authenticated, service_role;

SELECT public.compile_queue_status_notification();
