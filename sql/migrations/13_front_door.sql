-- 13 The front door: staff and customers reach their notifications through
-- two SQL functions that row-level security guards, called through PostgREST
-- (/rest/v1/rpc/...) or through the relay's /api routes (which run each
-- request as the caller, the way PostgREST does).
--
--   request_notification(p_registration_id, p_bypass_quiet_hours)
--       what `regnotify send` does: a message about the current stage, due
--       now, and the wake-up that sends it within seconds. Admin or
--       service_role only (SQLSTATE 42501 for anyone else).
--   notification_timeline(p_registration_id)
--       what `regnotify status REG --json` shows, as the caller may see it:
--       {"registration_id", "registration", "events": [...]}, NULL when the
--       caller cannot see the registration. Built from one small function per
--       event kind (timeline_*), so a later migration adds a kind by creating
--       its piece and adding one UNION ALL line to notification_timeline.
--
-- For the timeline to run as the caller, customers read their own queue
-- rows, preference changes and opt-out flag (policies below). Nothing here
-- drops or recreates an extension.

-- 1 ─ What a customer may read for their own timeline ────────────────────────

-- notification_queue: 04's admin_manages_queue (FOR ALL) becomes one policy
-- per action, so the SELECT one can add the customer's own bursts (stages and
-- times only: no contact lives in the queue).
DROP POLICY IF EXISTS admin_manages_queue ON public.notification_queue;

DROP POLICY IF EXISTS authenticated_select ON public.notification_queue;
CREATE POLICY authenticated_select ON public.notification_queue
    FOR SELECT TO authenticated
    USING ((SELECT public.jwt_is_admin()) OR EXISTS (
        SELECT 1 FROM public.registrations r
        WHERE r.id = registration_id
          AND r.customer_phone = (SELECT public.jwt_customer_phone())));

DROP POLICY IF EXISTS admin_inserts ON public.notification_queue;
CREATE POLICY admin_inserts ON public.notification_queue
    FOR INSERT TO authenticated
    WITH CHECK ((SELECT public.jwt_is_admin()));

DROP POLICY IF EXISTS admin_updates ON public.notification_queue;
CREATE POLICY admin_updates ON public.notification_queue
    FOR UPDATE TO authenticated
    USING ((SELECT public.jwt_is_admin())) WITH CHECK ((SELECT public.jwt_is_admin()));

DROP POLICY IF EXISTS admin_deletes ON public.notification_queue;
CREATE POLICY admin_deletes ON public.notification_queue
    FOR DELETE TO authenticated
    USING ((SELECT public.jwt_is_admin()));

-- notification_pref_changes: staff see all, a customer their registration's.
GRANT SELECT ON public.notification_pref_changes TO authenticated;
DROP POLICY IF EXISTS authenticated_select ON public.notification_pref_changes;
CREATE POLICY authenticated_select ON public.notification_pref_changes
    FOR SELECT TO authenticated
    USING ((SELECT public.jwt_is_admin()) OR EXISTS (
        SELECT 1 FROM public.registrations r
        WHERE r.id = registration_id
          AND r.customer_phone = (SELECT public.jwt_customer_phone())));

-- sms_opt_outs: whether a number opted out, for staff any number, for a
-- customer their own. Two columns only: `source` says how, which is the
-- backend's business.
GRANT SELECT (phone, opted_out) ON public.sms_opt_outs TO authenticated;
DROP POLICY IF EXISTS authenticated_select ON public.sms_opt_outs;
CREATE POLICY authenticated_select ON public.sms_opt_outs
    FOR SELECT TO authenticated
    USING ((SELECT public.jwt_is_admin()) OR phone = (SELECT public.jwt_customer_phone()));

-- The quiet-hours settings request_notification reads to say when a held
-- text leaves: staff read those columns of the one config row (never the
-- relay's URL or token), and may compute the opening time.
GRANT SELECT (id, quiet_hours_start, quiet_hours_end, quiet_hours_channels, default_time_zone)
    ON public.notification_config TO authenticated;
DROP POLICY IF EXISTS admin_reads_quiet_hours ON public.notification_config;
CREATE POLICY admin_reads_quiet_hours ON public.notification_config
    FOR SELECT TO authenticated
    USING ((SELECT public.jwt_is_admin()));
GRANT EXECUTE ON FUNCTION public.quiet_hours_release_at(timestamptz, text, time, time)
    TO authenticated;

-- 2 ─ The timeline, one piece per event kind ─────────────────────────────────

-- Every piece: SECURITY INVOKER (the caller's RLS decides), one row per
-- event: when it happened, a tie-breaker, and the event as jsonb with its
-- "kind". Timestamps stay timestamptz in the jsonb (ISO 8601 with offset).

-- Whether the caller is a customer rather than staff, the backend or a direct
-- connection: the pieces hide staff identities from customers. Reads the
-- claims without jwt_is_admin(), which only authenticated may execute.
CREATE OR REPLACE FUNCTION public.timeline_caller_is_customer()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT current_user IN ('anon', 'authenticated')
       AND coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb
                    -> 'app_metadata' ->> 'role', '') <> 'admin'
$fn$;

CREATE OR REPLACE FUNCTION public.timeline_registration(p_registration_id uuid)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT pg_catalog.jsonb_build_object(
        'id', r.id,
        'customer_name', r.customer_name,
        'customer_phone', r.customer_phone,
        'customer_email', r.customer_email,
        'notification_pref', r.notification_pref,
        'current_stage', r.current_stage,
        'current_stage_label', st.label,
        'current_stage_position', st.position,
        'vehicle_year', r.vehicle_year,
        'vehicle_make', r.vehicle_make,
        'vehicle_model', r.vehicle_model,
        'vin', r.vin,
        'plate_number', r.plate_number,
        'created_at', r.created_at,
        'updated_at', r.updated_at,
        'sms_opted_out', coalesce(o.opted_out, false))
    FROM public.registrations AS r
    LEFT JOIN public.registration_stages AS st ON st.stage = r.current_stage
    LEFT JOIN public.sms_opt_outs AS o ON o.phone = r.customer_phone
    WHERE r.id = p_registration_id
$fn$;

-- Bursts of stage changes (queue rows): how many changes were merged into one
-- message, and how the burst was closed.
CREATE OR REPLACE FUNCTION public.timeline_stage_changes(p_registration_id uuid)
RETURNS TABLE (event_at timestamptz, tie bigint, event jsonb)
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT q.created_at, q.id, pg_catalog.jsonb_build_object(
        'kind', 'stage_change',
        'at', q.created_at,
        'queue_id', q.id,
        'created_at', q.created_at,
        'updated_at', q.updated_at,
        'old_stage', q.old_stage,
        'new_stage', q.new_stage,
        'change_count', q.change_count,
        'notify_customer', q.notify_customer,
        'send_after', q.send_after,
        'sent', q.sent,
        'pending', NOT q.sent,
        'closed_reason', q.closed_reason,
        'processed_at', q.processed_at,
        'bypass_quiet_hours', q.bypass_quiet_hours)
    FROM public.notification_queue AS q
    WHERE q.registration_id = p_registration_id
$fn$;

-- One message per channel and burst, with its status, skip reason, provider
-- ids, errors, quiet-hours hold and fallback links.
CREATE OR REPLACE FUNCTION public.timeline_messages(p_registration_id uuid)
RETURNS TABLE (event_at timestamptz, tie bigint, event jsonb)
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT n.created_at, n.id, pg_catalog.jsonb_build_object(
        'kind', 'message',
        'at', n.created_at,
        'id', n.id,
        'queue_id', n.queue_id,
        'channel', n.channel,
        'recipient', n.recipient,
        'status', n.status,
        'skip_reason', n.skip_reason,
        'old_stage', n.old_stage,
        'new_stage', n.new_stage,
        'provider', n.provider,
        'provider_message_id', n.provider_message_id,
        'template_used', n.template_used,
        'subject', n.subject,
        'attempts', n.attempts,
        'error_code', n.error_code,
        'error_message', n.error_message,
        'next_attempt_at', n.next_attempt_at,
        'created_at', n.created_at,
        'updated_at', n.updated_at,
        'sent_at', n.sent_at,
        'delivered_at', n.delivered_at,
        'hold_reason', n.hold_reason,
        'held_until', n.held_until,
        'hold_zone', n.hold_zone,
        'held_until_local',
            pg_catalog.to_char(n.held_until AT TIME ZONE n.hold_zone, 'HH24:MI'),
        'fallback_for', n.fallback_for,
        'fallback_for_channel', fb.channel,
        'fallback_for_status', fb.status,
        'fallback_for_error_code', fb.error_code,
        'replaced_by', (SELECT x.id FROM public.registration_notifications AS x
                        WHERE x.fallback_for = n.id LIMIT 1))
    FROM public.registration_notifications AS n
    LEFT JOIN public.registration_notifications AS fb ON fb.id = n.fallback_for
    WHERE n.registration_id = p_registration_id
$fn$;

-- Quiet-hours holds: a message kept until the customer's window opens
-- (`still_held` false once it was released or replaced).
CREATE OR REPLACE FUNCTION public.timeline_holds(p_registration_id uuid)
RETURNS TABLE (event_at timestamptz, tie bigint, event jsonb)
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT n.created_at, n.id, pg_catalog.jsonb_build_object(
        'kind', 'hold',
        'at', n.created_at,
        'delivery_id', n.id,
        'channel', n.channel,
        'held_until', n.held_until,
        'held_until_local',
            pg_catalog.to_char(n.held_until AT TIME ZONE n.hold_zone, 'HH24:MI'),
        'time_zone', n.hold_zone,
        'still_held', n.hold_reason IS NOT NULL)
    FROM public.registration_notifications AS n
    WHERE n.registration_id = p_registration_id AND n.held_until IS NOT NULL
$fn$;

-- Fallbacks: a message sent on the other channel because the first failed.
CREATE OR REPLACE FUNCTION public.timeline_fallbacks(p_registration_id uuid)
RETURNS TABLE (event_at timestamptz, tie bigint, event jsonb)
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT n.created_at, n.id, pg_catalog.jsonb_build_object(
        'kind', 'fallback',
        'at', n.created_at,
        'delivery_id', n.id,
        'channel', n.channel,
        'instead_of', n.fallback_for,
        'failed_channel', fb.channel,
        'failed_status', fb.status,
        'failed_error_code', fb.error_code)
    FROM public.registration_notifications AS n
    LEFT JOIN public.registration_notifications AS fb ON fb.id = n.fallback_for
    WHERE n.registration_id = p_registration_id AND n.fallback_for IS NOT NULL
$fn$;

-- Preference changes and who made them (a customer sees that staff did, not
-- which staff member).
CREATE OR REPLACE FUNCTION public.timeline_preference_changes(p_registration_id uuid)
RETURNS TABLE (event_at timestamptz, tie bigint, event jsonb)
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT c.changed_at, c.id, pg_catalog.jsonb_build_object(
        'kind', 'preference_change',
        'at', c.changed_at,
        'id', c.id,
        'changed_at', c.changed_at,
        'old_pref', c.old_pref,
        'new_pref', c.new_pref,
        'changed_by_kind', c.changed_by_kind,
        'changed_by', CASE WHEN c.changed_by_kind = 'customer'
                                OR NOT public.timeline_caller_is_customer()
                           THEN c.changed_by END)
    FROM public.notification_pref_changes AS c
    WHERE c.registration_id = p_registration_id
$fn$;

-- The timeline. A new kind of event: its piece above, one line below.
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
            ) AS e), '[]'::jsonb))
    FROM (SELECT public.timeline_registration(p_registration_id) AS doc) AS reg
    -- Unknown or not the caller's: NULL, so neither door can tell which.
    WHERE reg.doc IS NOT NULL
$fn$;

-- 3 ─ A message now, by hand ─────────────────────────────────────────────────

-- SECURITY INVOKER, like the timeline: the caller's policies decide what it
-- reads and writes (an admin's reach the queue, the opt-out flags and the
-- quiet-hours columns granted in section 1). The first statement refuses everyone
-- but an admin and the backend with 42501, so a customer learns nothing.
-- `regnotify send` calls it on its own connection with service_role claims.
CREATE OR REPLACE FUNCTION public.request_notification(
    p_registration_id uuid, p_bypass_quiet_hours boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
DECLARE
    v_claims   jsonb := coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true),
                                        '')::jsonb, '{}'::jsonb);
    v_reg      record;
    v_cfg      record;
    v_chosen   text[];
    v_channel  text;
    v_channels text[] := '{}';
    v_skipped  jsonb := '[]'::jsonb;
    v_zone     text;
    v_until    timestamptz;
    v_answer   jsonb;
BEGIN
    IF NOT (v_claims ->> 'role' = 'service_role'
            OR coalesce(v_claims -> 'app_metadata' ->> 'role', '') = 'admin') THEN
        RAISE EXCEPTION 'only staff (an admin) or the backend may request a notification'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_bypass_quiet_hours IS NULL THEN
        p_bypass_quiet_hours := false;
    END IF;

    -- FOR UPDATE: a concurrent staff edit of the contact waits for this decision.
    SELECT r.id, r.customer_phone, r.customer_email, r.notification_pref, r.time_zone,
           coalesce(o.opted_out, false) AS sms_opted_out
    INTO v_reg
    FROM public.registrations AS r
    LEFT JOIN public.sms_opt_outs AS o ON o.phone = r.customer_phone
    WHERE r.id = p_registration_id
    FOR UPDATE OF r;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no registration %', p_registration_id USING ERRCODE = 'no_data_found';
    END IF;

    -- The claim's decisions (sql/queries/queue.sql, claim_due), said beforehand.
    IF v_reg.notification_pref = 'none' THEN
        RETURN pg_catalog.jsonb_build_object(
            'queued', false, 'reason', 'preference',
            'detail', 'the customer chose no messages (notification_pref = none)',
            'skipped', '[]'::jsonb);
    END IF;
    v_chosen := CASE v_reg.notification_pref WHEN 'both' THEN ARRAY['sms', 'email']
                ELSE ARRAY[v_reg.notification_pref] END;
    FOREACH v_channel IN ARRAY v_chosen LOOP
        IF v_channel = 'sms' AND v_reg.customer_phone IS NULL THEN
            v_skipped := v_skipped || pg_catalog.jsonb_build_object(
                'channel', 'sms', 'reason', 'no_contact',
                'detail', 'no SMS: no phone number on file');
        ELSIF v_channel = 'sms' AND v_reg.sms_opted_out THEN
            v_skipped := v_skipped || pg_catalog.jsonb_build_object(
                'channel', 'sms', 'reason', 'opted_out',
                'detail', 'no SMS: the phone number opted out (it can text START)');
        ELSIF v_channel = 'email' AND v_reg.customer_email IS NULL THEN
            v_skipped := v_skipped || pg_catalog.jsonb_build_object(
                'channel', 'email', 'reason', 'no_contact',
                'detail', 'no e-mail: no address on file');
        ELSE
            v_channels := v_channels || v_channel;
        END IF;
    END LOOP;
    IF pg_catalog.cardinality(v_channels) = 0 THEN
        RETURN pg_catalog.jsonb_build_object(
            'queued', false, 'reason', v_skipped -> 0 ->> 'reason',
            'detail', (SELECT pg_catalog.string_agg(s ->> 'detail', '; ')
                       FROM pg_catalog.jsonb_array_elements(v_skipped) AS s),
            'skipped', v_skipped);
    END IF;

    -- The same row `regnotify send` always wrote: a pending burst is made
    -- due; otherwise a row without old stage (the claim's 'manual').
    UPDATE public.notification_queue
    SET send_after = pg_catalog.now(), notify_customer = true,
        bypass_quiet_hours = p_bypass_quiet_hours, updated_at = pg_catalog.now()
    WHERE registration_id = p_registration_id AND sent = false;
    IF NOT FOUND THEN
        INSERT INTO public.notification_queue
            (registration_id, old_stage, new_stage, send_after, bypass_quiet_hours)
        SELECT r.id, NULL, r.current_stage, pg_catalog.now(), p_bypass_quiet_hours
        FROM public.registrations AS r
        WHERE r.id = p_registration_id;
    END IF;

    v_answer := pg_catalog.jsonb_build_object(
        'queued', true, 'channels', pg_catalog.to_jsonb(v_channels),
        'skipped', v_skipped, 'bypass_quiet_hours', p_bypass_quiet_hours);

    -- When a quiet channel will wait for the customer's window to open.
    SELECT c.quiet_hours_start, c.quiet_hours_end, c.quiet_hours_channels, c.default_time_zone
    INTO v_cfg
    FROM public.notification_config AS c WHERE c.id;
    IF FOUND AND NOT p_bypass_quiet_hours
       AND v_channels && coalesce(v_cfg.quiet_hours_channels, '{}'::text[]) THEN
        v_zone := coalesce(v_reg.time_zone, v_cfg.default_time_zone);
        v_until := public.quiet_hours_release_at(pg_catalog.now(), v_zone,
                                                 v_cfg.quiet_hours_start, v_cfg.quiet_hours_end);
        IF v_until IS NOT NULL THEN
            v_answer := v_answer || pg_catalog.jsonb_build_object(
                'held_until', v_until,
                'held_until_local', pg_catalog.to_char(v_until AT TIME ZONE v_zone, 'HH24:MI'),
                'time_zone', v_zone,
                'held_channels', pg_catalog.to_jsonb(ARRAY(
                    SELECT ch FROM pg_catalog.unnest(v_channels) AS ch
                    WHERE ch = ANY(v_cfg.quiet_hours_channels))));
        END IF;
    END IF;

    -- The wake-up, so the message leaves within seconds: the backend runs the
    -- tick itself (pg_net's POST /tick, or NOTIFY); staff's NOTIFY reaches a
    -- relay that LISTENs (delivered at commit), and the relay's API also
    -- wakes the queue after the call, as `regnotify send` does.
    IF pg_catalog.has_function_privilege('public.notification_tick()', 'EXECUTE') THEN
        PERFORM public.notification_tick();
    ELSE
        PERFORM pg_catalog.pg_notify('notification_tick', pg_catalog.json_build_object(
            'source', 'request_notification', 'at', pg_catalog.now())::text);
    END IF;
    RETURN v_answer;
END
$fn$;

-- 4 ─ Grants (as in 12: revoke from everyone, then exactly what is needed) ────

REVOKE ALL ON FUNCTION
    public.request_notification(uuid, boolean),
    public.notification_timeline(uuid),
    public.timeline_caller_is_customer(),
    public.timeline_registration(uuid),
    public.timeline_stage_changes(uuid),
    public.timeline_messages(uuid),
    public.timeline_holds(uuid),
    public.timeline_fallbacks(uuid),
    public.timeline_preference_changes(uuid)
FROM PUBLIC, anon, authenticated, service_role;

GRANT EXECUTE ON FUNCTION
    public.request_notification(uuid, boolean),
    public.notification_timeline(uuid),
    public.timeline_caller_is_customer(),
    public.timeline_registration(uuid),
    public.timeline_stage_changes(uuid),
    public.timeline_messages(uuid),
    public.timeline_holds(uuid),
    public.timeline_fallbacks(uuid),
    public.timeline_preference_changes(uuid)
TO authenticated, service_role;

-- 5 ─ The relay's login role ─────────────────────────────────────────────────

-- The relay's API runs each request with SET LOCAL ROLE authenticated (or
-- service_role), which only a member of those roles may do. Supabase's
-- postgres role already is; elsewhere the database owner grants it where it
-- can (CREATEROLE with ADMIN on the roles, or a superuser) and says so
-- otherwise. The README ("The API") names the statement to run.
DO $members$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['authenticated', 'service_role'] LOOP
        CONTINUE WHEN pg_catalog.pg_has_role(current_user, v_role, 'MEMBER');
        BEGIN
            EXECUTE pg_catalog.format('GRANT %I TO %I', v_role, current_user);
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'regnotify: % is not a member of %: the relay''s API needs '
                         '"GRANT authenticated, service_role TO <relay login role>" '
                         'run by a superuser (see README, The API)', current_user, v_role;
        END;
    END LOOP;
END
$members$;
