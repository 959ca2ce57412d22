-- drops-data: registrations.stage_changed_at, when each registration's stage last changed
-- Undoes 26_stage_changed_at.sql.

-- 08's template again, and the trigger rewritten from it, before the column goes.
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
            updated_at      = EXCLUDED.updated_at;

        NEW.pending_notify_customer := NULL;
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$fn$
$ddl$, v_window, v_max);
END
$compile$;

SELECT public.compile_queue_status_notification();

ALTER TABLE public.registrations DROP COLUMN IF EXISTS stage_changed_at;
