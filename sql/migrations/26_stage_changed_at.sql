-- 26 When the stage last changed, kept apart from updated_at.
--
-- The customer page said "Last change" from registrations.updated_at, which
-- also moves when the customer saves a preference or a language (12, 17):
-- saving made the registration look as if it had moved on. stage_changed_at
-- moves only with current_stage, set by its own trigger so the compiled
-- queue trigger (08) stays as it is.

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

-- SECURITY INVOKER: it only stamps the row being written.
CREATE OR REPLACE FUNCTION public.registrations_stage_changed_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
BEGIN
    NEW.stage_changed_at := pg_catalog.now();
    RETURN NEW;
END
$fn$;

-- Named after registrations_customer_guard (triggers fire in name order), so
-- the guard compares the customer's own row, not one this trigger stamped.
DROP TRIGGER IF EXISTS registrations_stage_changed_at ON public.registrations;
CREATE TRIGGER registrations_stage_changed_at
    BEFORE UPDATE OF current_stage ON public.registrations
    FOR EACH ROW
    WHEN (OLD.current_stage IS DISTINCT FROM NEW.current_stage)
    EXECUTE FUNCTION public.registrations_stage_changed_at();

-- Only the trigger calls it; Supabase's default privileges would let anyone.
REVOKE ALL ON FUNCTION public.registrations_stage_changed_at()
    FROM PUBLIC, anon, authenticated, service_role;
-- No UPDATE on the column: staff move the stage, the trigger stamps it. 12's
-- loop grants every column it finds when files are applied again; taken back.
REVOKE UPDATE (stage_changed_at) ON public.registrations FROM authenticated;
