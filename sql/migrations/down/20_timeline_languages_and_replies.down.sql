-- Undo of 20: the timeline as 13 wrote it (no language, no replies, no
-- preference change on a skipped message). Functions only: no data is lost.

-- 13's definitions again (CREATE OR REPLACE keeps their grants).
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

-- Nothing calls it any more.
DROP FUNCTION IF EXISTS public.timeline_replies(uuid);

REVOKE SELECT (default_language) ON public.notification_config FROM authenticated;
