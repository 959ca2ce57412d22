-- drops-data: the notification queue (notification_queue) and its settings (notification_config), what 04 added to the delivery history (queue_id, old_stage, new_stage, subject, template_used, provider_message_id, provider, body, skip_reason, outcome_unknown, last_attempt_at, next_attempt_at, lease_until) and to registrations (notification_pref, pending_notify_customer)
-- Undo of 04, section by section from the last (7) to the first (1).
-- registrations and registration_notifications keep their rows; what 04
-- found on them (a column, a constraint, an index of the dealership's own)
-- stays: `regnotify.adopted(key)` is the runner's record of it.

-- 7 ─ Tick and schedule. pg_cron and pg_net stay installed: the runner drops
-- them only where it recorded 04 creating them and nothing else uses them.
DO $cron$
BEGIN
    IF pg_catalog.to_regclass('cron.job') IS NOT NULL THEN
        PERFORM cron.unschedule(j.jobid) FROM cron.job j
        WHERE j.jobname = 'process-notification-queue' AND j.username = current_user;
    END IF;
END
$cron$;
DROP FUNCTION IF EXISTS public.notification_tick();

-- 6 ─ Row-level security: policies, grants, the JWT helpers.
DROP POLICY IF EXISTS customer_reads_own_registrations ON public.registrations;
DROP POLICY IF EXISTS admin_manages_registrations ON public.registrations;
DROP POLICY IF EXISTS service_role_all ON public.registrations;
DROP POLICY IF EXISTS customer_reads_own_notifications ON public.registration_notifications;
DROP POLICY IF EXISTS admin_reads_notifications ON public.registration_notifications;
DROP POLICY IF EXISTS service_role_all ON public.registration_notifications;
DROP POLICY IF EXISTS everyone_reads_stages ON public.registration_stages;
DROP POLICY IF EXISTS admin_manages_queue ON public.notification_queue;
DROP POLICY IF EXISTS service_role_all ON public.notification_queue;
DROP POLICY IF EXISTS service_role_all ON public.notification_config;
ALTER TABLE IF EXISTS public.registration_stages DISABLE ROW LEVEL SECURITY;
REVOKE SELECT ON public.registration_stages FROM anon, authenticated, service_role;

-- 04 switched on row-level security and granted the API roles on the two tables the seed
-- may have had first. On a table regnotify created it is taken back here; on an adopted
-- one the runner puts back the grants and the RLS switch it recorded before 04.
DO $undo$
DECLARE
    v_adopted boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted USING 'rel|public.registrations';
    END IF;
    IF NOT v_adopted THEN
        ALTER TABLE public.registrations DISABLE ROW LEVEL SECURITY;
        REVOKE SELECT, INSERT, UPDATE, DELETE ON public.registrations
            FROM anon, authenticated, service_role;
    END IF;
END
$undo$;

-- The same for the delivery history.
DO $undo$
DECLARE
    v_adopted boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted USING 'rel|public.registration_notifications';
    END IF;
    IF NOT v_adopted THEN
        ALTER TABLE public.registration_notifications DISABLE ROW LEVEL SECURITY;
        REVOKE SELECT, INSERT, UPDATE, DELETE ON public.registration_notifications
            FROM anon, authenticated, service_role;
    END IF;
END
$undo$;

-- Schema public's USAGE for the API roles: the runner puts back what it
-- recorded (Supabase grants it itself; vanilla PostgreSQL did not have it).

DROP FUNCTION IF EXISTS public.jwt_customer_phone();
DROP FUNCTION IF EXISTS public.jwt_is_admin();

-- 5 ─ The trigger.
DROP TRIGGER IF EXISTS trg_queue_status_notification ON public.registrations;
DROP FUNCTION IF EXISTS public.queue_status_notification();

-- 4, 3 ─ registrations: pending_notify_customer, notification_pref.
-- registration_notifications_skip_reason_check: 04's.
DO $undo$
DECLARE
    v_adopted boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted USING 'con|public.registration_notifications.registration_notifications_skip_reason_check';
    END IF;
    IF NOT v_adopted THEN
        ALTER TABLE IF EXISTS public.registration_notifications
            DROP CONSTRAINT IF EXISTS registration_notifications_skip_reason_check;
    END IF;
END
$undo$;

-- uq_registration_notifications_queue_channel: 04's.
DO $undo$
DECLARE
    v_adopted boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted USING 'con|public.registration_notifications.uq_registration_notifications_queue_channel';
    END IF;
    IF NOT v_adopted THEN
        ALTER TABLE IF EXISTS public.registration_notifications
            DROP CONSTRAINT IF EXISTS uq_registration_notifications_queue_channel;
    END IF;
END
$undo$;

-- registrations_notification_pref_check: 04's.
DO $undo$
DECLARE
    v_adopted boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted USING 'con|public.registrations.registrations_notification_pref_check';
    END IF;
    IF NOT v_adopted THEN
        ALTER TABLE IF EXISTS public.registrations
            DROP CONSTRAINT IF EXISTS registrations_notification_pref_check;
    END IF;
END
$undo$;

-- Only what regnotify added: a column the dealership's own table already had (adopted) stays, with its values.
DO $undo$
DECLARE
    v_col     text;
    v_adopted boolean;
BEGIN
    FOREACH v_col IN ARRAY ARRAY['pending_notify_customer', 'notification_pref'] LOOP
        v_adopted := false;
        IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
            EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted
                USING 'col|public.registrations.' || v_col;
        END IF;
        IF NOT v_adopted THEN
            EXECUTE pg_catalog.format('ALTER TABLE IF EXISTS public.registrations DROP COLUMN IF EXISTS %I',
                                      v_col);
        END IF;
    END LOOP;
END
$undo$;

-- 2 ─ The delivery history's extensions.
-- ix_registration_notifications_provider_message_id: 04's.
DO $undo$
DECLARE
    v_adopted boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted USING 'rel|public.ix_registration_notifications_provider_message_id';
    END IF;
    IF NOT v_adopted THEN
        DROP INDEX IF EXISTS public.ix_registration_notifications_provider_message_id;
    END IF;
END
$undo$;

-- ix_registration_notifications_in_flight: 04's.
DO $undo$
DECLARE
    v_adopted boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted USING 'rel|public.ix_registration_notifications_in_flight';
    END IF;
    IF NOT v_adopted THEN
        DROP INDEX IF EXISTS public.ix_registration_notifications_in_flight;
    END IF;
END
$undo$;

-- Only what regnotify added: a column the dealership's own table already had (adopted) stays, with its values.
DO $undo$
DECLARE
    v_col     text;
    v_adopted boolean;
BEGIN
    FOREACH v_col IN ARRAY ARRAY['queue_id', 'old_stage', 'new_stage', 'subject', 'template_used', 'provider_message_id', 'provider', 'body', 'skip_reason', 'outcome_unknown', 'last_attempt_at', 'next_attempt_at', 'lease_until'] LOOP
        v_adopted := false;
        IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
            EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted
                USING 'col|public.registration_notifications.' || v_col;
        END IF;
        IF NOT v_adopted THEN
            EXECUTE pg_catalog.format('ALTER TABLE IF EXISTS public.registration_notifications DROP COLUMN IF EXISTS %I',
                                      v_col);
        END IF;
    END LOOP;
END
$undo$;

-- 1 ─ The queue and its settings.
DROP TABLE IF EXISTS public.notification_queue;
DROP TABLE IF EXISTS public.notification_config;
