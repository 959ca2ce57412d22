-- drops-data: the staff members list, the log of staff actions (who handled what), which failed deliveries and replies staff marked handled, and pending staff sign-in codes
-- Undo of 21_staff_console.sql: the console's functions, tables, columns and
-- indexes go; notification_timeline(), request_notification() and
-- timeline_caller_is_customer() are put back as 20 and 13 defined them, and
-- jwt_is_admin() as 04 did but refusing regnotify-issued tokens (see there).

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

-- 04's claims-only admin, except that a token regnotify issued (iss =
-- regnotify, the console's 10-hour staff sessions) is never admin: without
-- staff_members nothing could tell a member's from a removed one's.
CREATE OR REPLACE FUNCTION public.jwt_is_admin()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT coalesce(auth.jwt() -> 'app_metadata' ->> 'role', '') = 'admin'
       AND coalesce(auth.jwt() ->> 'iss', '') <> 'regnotify'
$fn$;

-- 13's definitions of the two functions 21 made ask jwt_is_admin().
CREATE OR REPLACE FUNCTION public.timeline_caller_is_customer()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT current_user IN ('anon', 'authenticated')
       AND coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb
                    -> 'app_metadata' ->> 'role', '') <> 'admin'
$fn$;

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

DROP INDEX IF EXISTS public.ix_registration_notifications_created;
DROP INDEX IF EXISTS public.ix_registration_notifications_status_created;
DROP INDEX IF EXISTS public.ix_registration_notifications_attention;
DROP INDEX IF EXISTS public.ix_inbound_messages_unhandled;
DROP INDEX IF EXISTS public.ix_registrations_customer_email_lower;
DROP INDEX IF EXISTS public.ix_registrations_vin_upper;
DROP INDEX IF EXISTS public.ix_registrations_customer_name_words;

ALTER TABLE IF EXISTS public.registration_notifications
    DROP COLUMN IF EXISTS handled_at;
ALTER TABLE IF EXISTS public.inbound_messages
    DROP COLUMN IF EXISTS handled_at;

DROP TABLE IF EXISTS public.staff_sign_in_codes;
DROP TABLE IF EXISTS public.staff_actions;
DROP TABLE IF EXISTS public.staff_members;
