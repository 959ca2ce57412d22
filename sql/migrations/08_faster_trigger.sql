-- 08 A cheaper queue_status_notification(): the same behaviour, less
-- work per stage change. Measured with `python -m bench.trigger` against the
-- seed plan's trigger (bench/trigger.py); per stage UPDATE, backend CPU:
--   * the notification_config lookup was a second SPI statement on every row
--     (its own snapshot, executor start and end): about 2 us. The settings are
--     now compiled into the function as literals, and recompiled by a trigger
--     on notification_config whenever they change, so they stay changeable at
--     run time (an UPDATE takes effect for the stage changes after it, as the
--     lookup did) with no per-row read and no GUC.
--   * the trigger's WHEN clause is parsed and compiled afresh for every UPDATE
--     statement (stringToNode + ExecPrepareQual): about 0.8 us for a one-row
--     UPDATE. The same test in the body costs a plpgsql IF. `OF current_stage`
--     still keeps every UPDATE that does not name the column away from it.
--   * closed_reason's CHECK was re-parsed by every upsert (below): ~4 us for
--     ours and the seed's alike.
-- Kept: SECURITY DEFINER, the pinned search_path (SET search_path = '', the
-- cheapest pinned value measured; on PostgreSQL 15 its save/restore and the
-- search-path recomputations it forces cost ~1.4 us per one-row UPDATE, the
-- whole remaining gap to the seed's unpinned trigger), the upsert
-- on uq_pending_notification with ON CONFLICT (registration_id) WHERE
-- (sent = false), the first old_stage of a burst, change_count, the max_wait
-- cap and NEW.pending_notify_customer consumed. A->B->A still leaves a row
-- with old_stage = new_stage, which the claim closes as no_net_change.
-- Every index on notification_queue is read by a query (claim: due; status,
-- demo and ON DELETE CASCADE: registration; the upsert: uq_pending; deliveries:
-- the key), so none is dropped.
-- Safe to run twice; runs as the database owner, no superuser.

-- closed_reason: a CHECK constraint is read back from its stored node tree
-- (stringToNode) and planned afresh by every statement that inserts or
-- updates a row, so each upsert paid for parsing this IN list: ~4 us, a
-- fifth of the trigger's cost. A domain's check is parsed once per session
-- (type cache) and checks the same values.
DO $closed_reason$
BEGIN
    IF pg_catalog.to_regtype('public.notification_closed_reason') IS NULL THEN
        CREATE DOMAIN public.notification_closed_reason AS text;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_constraint
        WHERE conname = 'notification_closed_reason_check'
          AND contypid = 'public.notification_closed_reason'::regtype
    ) THEN
        -- NOT VALID first, then VALIDATE: the column change needs no rewrite.
        ALTER DOMAIN public.notification_closed_reason
            ADD CONSTRAINT notification_closed_reason_check
            CHECK (VALUE IN ('processed', 'no_net_change', 'silenced', 'manual')) NOT VALID;
    END IF;
    IF (SELECT a.atttypid FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = 'public.notification_queue'::regclass
          AND a.attname = 'closed_reason') <> 'public.notification_closed_reason'::regtype THEN
        ALTER TABLE public.notification_queue
            DROP CONSTRAINT IF EXISTS notification_queue_closed_reason_check,
            ALTER COLUMN closed_reason TYPE public.notification_closed_reason;
    END IF;
END
$closed_reason$;
ALTER DOMAIN public.notification_closed_reason
    VALIDATE CONSTRAINT notification_closed_reason_check;

-- Writes queue_status_notification() with the current settings as literals.
-- Serialised by an advisory lock, so two settings changes committing together
-- cannot replace the function concurrently.
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

CREATE OR REPLACE FUNCTION public.notification_config_recompile()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $fn$
BEGIN
    PERFORM public.compile_queue_status_notification();
    RETURN NULL;
END
$fn$;

-- Called by the owner (this file) and by the trigger below, never through
-- PostgREST.
REVOKE ALL ON FUNCTION public.compile_queue_status_notification()
    FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON FUNCTION public.notification_config_recompile()
    FROM PUBLIC, anon, authenticated, service_role;

DROP TRIGGER IF EXISTS trg_notification_config_recompile ON public.notification_config;
CREATE TRIGGER trg_notification_config_recompile
    AFTER INSERT OR DELETE OR UPDATE OF debounce_window, max_wait
    ON public.notification_config
    FOR EACH ROW
    EXECUTE FUNCTION public.notification_config_recompile();

DROP TRIGGER IF EXISTS trg_notification_config_recompile_truncate ON public.notification_config;
CREATE TRIGGER trg_notification_config_recompile_truncate
    AFTER TRUNCATE ON public.notification_config
    FOR EACH STATEMENT
    EXECUTE FUNCTION public.notification_config_recompile();

SELECT public.compile_queue_status_notification();

-- The stage test moved into the body (see the top of this file).
DROP TRIGGER IF EXISTS trg_queue_status_notification ON public.registrations;
CREATE TRIGGER trg_queue_status_notification
    BEFORE UPDATE OF current_stage ON public.registrations
    FOR EACH ROW
    EXECUTE FUNCTION public.queue_status_notification();
