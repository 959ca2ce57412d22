-- Undoes 27_one_consent_rule.sql: the CHECK lists of 04, 10 and 17 again, and
-- request_notification as 21 left it. Refuses (a CHECK violation, nothing
-- changed) while a row holds a value added after 27.

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
    -- The backend first, in its own IF: service_role may not execute
    -- jwt_is_admin(), and PL/pgSQL checks that when the expression is set up.
    IF v_claims ->> 'role' = 'service_role' THEN
        NULL;
    ELSIF NOT coalesce(public.jwt_is_admin(), false) THEN
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

DROP FUNCTION IF EXISTS public.regnotify_skip_reason(text, text, text, text, boolean, boolean,
                                                     text, text);

ALTER TABLE IF EXISTS public.registrations
    DROP CONSTRAINT IF EXISTS registrations_notification_pref_fkey,
    DROP CONSTRAINT IF EXISTS registrations_language_fkey;
ALTER TABLE IF EXISTS public.registration_notifications
    DROP CONSTRAINT IF EXISTS registration_notifications_language_fkey,
    DROP CONSTRAINT IF EXISTS registration_notifications_skip_reason_fkey;
ALTER TABLE IF EXISTS public.notification_config
    DROP CONSTRAINT IF EXISTS notification_config_default_language_fkey;

-- The trigger that asks the tables, then the CHECK lists it replaced.
DROP TRIGGER IF EXISTS regnotify_check_vocabulary ON public.registrations;
DROP TRIGGER IF EXISTS regnotify_check_vocabulary ON public.notification_config;
DROP FUNCTION IF EXISTS public.regnotify_check_vocabulary();

DO $checks$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                   WHERE conname = 'registrations_notification_pref_check') THEN
        ALTER TABLE public.registrations
            ADD CONSTRAINT registrations_notification_pref_check
            CHECK (notification_pref IN ('sms', 'email', 'both', 'none'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                   WHERE conname = 'registration_notifications_skip_reason_check') THEN
        ALTER TABLE public.registration_notifications
            ADD CONSTRAINT registration_notifications_skip_reason_check
            CHECK (skip_reason IN ('preference', 'silenced', 'no_contact', 'opted_out',
                                   'no_net_change', 'superseded'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                   WHERE conname = 'notification_config_default_language_check') THEN
        ALTER TABLE public.notification_config
            ADD CONSTRAINT notification_config_default_language_check
            CHECK (default_language IN ('en', 'es'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                   WHERE conname = 'registrations_language_check') THEN
        ALTER TABLE public.registrations
            ADD CONSTRAINT registrations_language_check
            CHECK (language IN ('en', 'es'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                   WHERE conname = 'registration_notifications_language_check') THEN
        ALTER TABLE public.registration_notifications
            ADD CONSTRAINT registration_notifications_language_check
            CHECK (language IN ('en', 'es'));
    END IF;
END
$checks$;

-- Their rows are the migration's own, restated by the CHECKs above.
DROP TABLE IF EXISTS public.notification_skip_reasons;
DROP TABLE IF EXISTS public.notification_languages;
DROP TABLE IF EXISTS public.notification_preferences;
