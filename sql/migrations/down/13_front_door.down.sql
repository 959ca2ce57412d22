-- Undo of 13: no front door. Functions, policies and grants only: no data is lost.
-- (13 also made the migrating role a member of authenticated and
-- service_role where it could: the runner revokes that where it recorded
-- 13 granting it.)

DROP FUNCTION IF EXISTS public.request_notification(uuid, boolean);
DROP FUNCTION IF EXISTS public.notification_timeline(uuid);
DROP FUNCTION IF EXISTS public.timeline_stage_changes(uuid);
DROP FUNCTION IF EXISTS public.timeline_messages(uuid);
DROP FUNCTION IF EXISTS public.timeline_holds(uuid);
DROP FUNCTION IF EXISTS public.timeline_fallbacks(uuid);
DROP FUNCTION IF EXISTS public.timeline_preference_changes(uuid);
DROP FUNCTION IF EXISTS public.timeline_registration(uuid);
DROP FUNCTION IF EXISTS public.timeline_caller_is_customer();

REVOKE EXECUTE ON FUNCTION public.quiet_hours_release_at(timestamptz, text, time, time)
    FROM authenticated;

DROP POLICY IF EXISTS admin_reads_quiet_hours ON public.notification_config;
REVOKE SELECT (id, quiet_hours_start, quiet_hours_end, quiet_hours_channels, default_time_zone)
    ON public.notification_config FROM authenticated;

DROP POLICY IF EXISTS authenticated_select ON public.sms_opt_outs;
REVOKE SELECT (phone, opted_out) ON public.sms_opt_outs FROM authenticated;

DROP POLICY IF EXISTS authenticated_select ON public.notification_pref_changes;
REVOKE SELECT ON public.notification_pref_changes FROM authenticated;

-- The queue: 04's one policy for all of an admin's actions again.
DROP POLICY IF EXISTS authenticated_select ON public.notification_queue;
DROP POLICY IF EXISTS admin_inserts ON public.notification_queue;
DROP POLICY IF EXISTS admin_updates ON public.notification_queue;
DROP POLICY IF EXISTS admin_deletes ON public.notification_queue;
DROP POLICY IF EXISTS admin_manages_queue ON public.notification_queue;
CREATE POLICY admin_manages_queue ON public.notification_queue
    FOR ALL TO authenticated
    USING (public.jwt_is_admin()) WITH CHECK (public.jwt_is_admin());
