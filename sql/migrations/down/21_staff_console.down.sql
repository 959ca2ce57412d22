-- drops-data: the staff members list, the log of staff actions, and which failed deliveries and replies staff marked handled (and by whom)
-- Undo of 21_staff_console.sql: the console's functions, tables, columns and
-- indexes go; jwt_is_admin() and notification_timeline() are put back as 04
-- and 20 defined them.

CREATE OR REPLACE FUNCTION public.notification_timeline(p_registration_id uuid)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT pg_catalog.jsonb_build_object(
        'registration_id', p_registration_id,
        'registration', reg.doc,
        'events', coalesce((
            SELECT pg_catalog.jsonb_agg(e.event ORDER BY e.event_at, e.event ->> 'kind', e.tie)
            FROM (
                SELECT * FROM public.timeline_stage_changes(p_registration_id)
                UNION ALL SELECT * FROM public.timeline_messages(p_registration_id)
                UNION ALL SELECT * FROM public.timeline_holds(p_registration_id)
                UNION ALL SELECT * FROM public.timeline_fallbacks(p_registration_id)
                UNION ALL SELECT * FROM public.timeline_preference_changes(p_registration_id)
                UNION ALL SELECT * FROM public.timeline_replies(p_registration_id)
            ) AS e), '[]'::jsonb))
    FROM (SELECT public.timeline_registration(p_registration_id) AS doc) AS reg
    -- Unknown or not the caller's: NULL, so neither door can tell which.
    WHERE reg.doc IS NOT NULL
$fn$;

DROP FUNCTION IF EXISTS public.timeline_staff_actions(uuid);
DROP FUNCTION IF EXISTS public.staff_me();
DROP SCHEMA IF EXISTS regnotify_staff CASCADE;

CREATE OR REPLACE FUNCTION public.jwt_is_admin()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT coalesce(auth.jwt() -> 'app_metadata' ->> 'role', '') = 'admin'
$fn$;

DROP INDEX IF EXISTS public.ix_registration_notifications_created;
DROP INDEX IF EXISTS public.ix_registration_notifications_status_created;
DROP INDEX IF EXISTS public.ix_registration_notifications_attention;
DROP INDEX IF EXISTS public.ix_inbound_messages_unhandled;
DROP INDEX IF EXISTS public.ix_registrations_customer_email_lower;
DROP INDEX IF EXISTS public.ix_registrations_vin_upper;
DROP INDEX IF EXISTS public.ix_registrations_customer_name_words;

ALTER TABLE IF EXISTS public.registration_notifications
    DROP COLUMN IF EXISTS handled_at,
    DROP COLUMN IF EXISTS handled_by;
ALTER TABLE IF EXISTS public.inbound_messages
    DROP COLUMN IF EXISTS handled_at,
    DROP COLUMN IF EXISTS handled_by;

DROP TABLE IF EXISTS public.staff_actions;
DROP TABLE IF EXISTS public.staff_members;
