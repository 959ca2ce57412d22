-- The front door (migration 13): what `regnotify send`/`status` and the
-- relay's /api routes run. The API runs every one of these as the caller
-- (db/as_caller.py); the CLI on its own connection with service_role claims.

-- name: act_as_backend
-- The CLI is the backend: request_notification lets service_role through.
-- Local to the transaction, like PostgREST's own setting.
SELECT set_config('request.jwt.claims', '{"role": "service_role"}', true);

-- name: request_notification
SELECT public.request_notification(%(registration_id)s::uuid, %(bypass_quiet_hours)s) AS answer;

-- name: notification_timeline
SELECT public.notification_timeline(%(registration_id)s::uuid) AS doc;

-- name: my_registrations
-- The caller's own registrations (by the JWT's phone, as the policies match
-- it); RLS still decides what the caller may read at all.
SELECT coalesce(jsonb_agg(jsonb_build_object(
           'id', r.id,
           'stage', r.current_stage,
           'stage_label', st.label,
           'stage_position', st.position,
           'vehicle', jsonb_build_object('year', r.vehicle_year, 'make', r.vehicle_make,
                                         'model', r.vehicle_model, 'vin', r.vin,
                                         'plate_number', r.plate_number),
           'notification_pref', r.notification_pref,
           'language', r.language,
           'updated_at', r.updated_at) ORDER BY r.created_at, r.id), '[]'::jsonb) AS doc
FROM public.registrations AS r
LEFT JOIN public.registration_stages AS st ON st.stage = r.current_stage
WHERE r.customer_phone = '+' || ltrim(
    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'phone', '+');

-- name: update_my_registration
-- One of the caller's own registrations, through RLS, the column grant and
-- the guard trigger. Each editable field: a flag saying whether the request
-- sets it, and its value (one line per field).
UPDATE public.registrations AS r
SET notification_pref = CASE WHEN %(set_notification_pref)s THEN %(notification_pref)s
                             ELSE r.notification_pref END,
    language = CASE WHEN %(set_language)s THEN %(language)s ELSE r.language END
WHERE r.id = %(registration_id)s::uuid
  AND r.customer_phone = '+' || ltrim(
      nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'phone', '+')
RETURNING r.id, r.notification_pref, r.language;
