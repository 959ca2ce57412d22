-- Undo of 08: 04's trigger, which reads notification_config on every
-- stage change, and closed_reason as text with a CHECK. No data is lost.

DROP TRIGGER IF EXISTS trg_notification_config_recompile ON public.notification_config;
DROP TRIGGER IF EXISTS trg_notification_config_recompile_truncate ON public.notification_config;
DROP FUNCTION IF EXISTS public.notification_config_recompile();
DROP FUNCTION IF EXISTS public.compile_queue_status_notification();

CREATE OR REPLACE FUNCTION public.queue_status_notification()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
-- Empty: every name below is schema-qualified, so a caller's search_path
-- cannot redirect this definer-rights function to objects of their own.
SET search_path = ''
AS $fn$
DECLARE
    v_window interval;
    v_max    interval;
BEGIN
    SELECT c.debounce_window, c.max_wait INTO v_window, v_max
    FROM public.notification_config c
    WHERE c.id;
    v_window := coalesce(v_window, interval '5 minutes');
    v_max := coalesce(v_max, interval '30 minutes');

    INSERT INTO public.notification_queue AS q
        (registration_id, old_stage, new_stage, send_after, notify_customer)
    VALUES
        (NEW.id, OLD.current_stage, NEW.current_stage, now() + v_window,
         coalesce(NEW.pending_notify_customer, true))
    ON CONFLICT (registration_id) WHERE (sent = false) DO UPDATE
    SET new_stage       = EXCLUDED.new_stage,
        -- The burst's first change started the clock: keep changing and the
        -- message still leaves by created_at + max_wait.
        send_after      = least(now() + v_window, q.created_at + v_max),
        notify_customer = EXCLUDED.notify_customer,
        change_count    = q.change_count + 1,
        updated_at      = now();

    NEW.pending_notify_customer := NULL;
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;

DROP TRIGGER IF EXISTS trg_queue_status_notification ON public.registrations;
CREATE TRIGGER trg_queue_status_notification
    BEFORE UPDATE OF current_stage ON public.registrations
    FOR EACH ROW
    WHEN (OLD.current_stage IS DISTINCT FROM NEW.current_stage)
    EXECUTE FUNCTION public.queue_status_notification();

DO $closed_reason$
BEGIN
    IF pg_catalog.to_regtype('public.notification_closed_reason') IS NOT NULL THEN
        ALTER TABLE public.notification_queue
            ALTER COLUMN closed_reason TYPE text;
        ALTER TABLE public.notification_queue
            ADD CONSTRAINT notification_queue_closed_reason_check
            CHECK (closed_reason IN ('processed', 'no_net_change', 'silenced', 'manual'));
        DROP DOMAIN public.notification_closed_reason;
    END IF;
END
$closed_reason$;
