-- 26 When the stage last changed, kept apart from updated_at.
--
-- The customer page said "Last change" from registrations.updated_at, which
-- also moves when the customer saves a preference or a language (12, 17):
-- saving made the registration look as if it had moved on. stage_changed_at
-- moves only with current_stage. The compiled queue trigger (08) stamps it:
-- it already runs exactly when the stage changes, so a stage UPDATE still
-- calls one trigger, not two (bench/trigger_profile.py counts them).

ALTER TABLE public.registrations
    ADD COLUMN IF NOT EXISTS stage_changed_at timestamptz;

-- Rows from before this file: the last burst of stage changes in the queue
-- (each burst's updated_at is its last change), else updated_at, which the
-- queue trigger set at the last change unless a preference moved it since.
UPDATE public.registrations AS r
SET stage_changed_at = coalesce(
        (SELECT max(q.updated_at) FROM public.notification_queue AS q
         WHERE q.registration_id = r.id AND q.old_stage IS NOT NULL),
        r.updated_at)
WHERE r.stage_changed_at IS NULL;

ALTER TABLE public.registrations
    ALTER COLUMN stage_changed_at SET DEFAULT now(),
    ALTER COLUMN stage_changed_at SET NOT NULL;

-- 08's template, with the one line that stamps stage_changed_at; rewritten
-- at once, so the trigger stamps from the next stage change on.
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
        NEW.stage_changed_at := now();
    END IF;
    RETURN NEW;
END
$fn$
$ddl$, v_window, v_max);
END
$compile$;

SELECT public.compile_queue_status_notification();

-- No UPDATE on the column: staff move the stage, the trigger stamps it. 12's
-- loop grants every column it finds when files are applied again; taken back.
REVOKE UPDATE (stage_changed_at) ON public.registrations FROM authenticated;
