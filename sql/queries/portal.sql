-- The customer page. Every query runs as the signed-in customer (db.as_caller):
-- row-level security decides which rows exist for them.

-- name: portal_registrations
SELECT r.id, r.vehicle_year, r.vehicle_make, r.vehicle_model, r.plate_number,
       r.current_stage, r.notification_pref, r.stage_changed_at, r.time_zone,
       r.language
FROM public.registrations r
ORDER BY r.created_at, r.id;

-- name: portal_stages
SELECT stage, position, label FROM public.registration_stages ORDER BY position;

-- name: portal_deliveries
-- Only what the page can explain in the customer's words: a message not sent
-- because staff silenced it, because the changes ended where they began, or
-- because a newer one replaced it is no news to the customer and is left out.
SELECT n.registration_id, n.channel, n.status, n.skip_reason, n.new_stage, n.created_at, n.sent_at,
       n.delivered_at, n.held_until, n.hold_reason, n.hold_zone
FROM public.registration_notifications n
WHERE n.status <> 'skipped' OR n.skip_reason IN ('preference', 'no_contact', 'opted_out')
ORDER BY n.created_at DESC, n.id DESC
LIMIT 100;

-- name: portal_set_pref
-- The language only when the form carries one: an unchosen language (NULL,
-- the dealership's default) stays unchosen when just the preference is saved.
UPDATE public.registrations
SET notification_pref = %(pref)s,
    language = CASE WHEN %(set_language)s THEN %(language)s ELSE language END
WHERE id = %(id)s
RETURNING id;

-- name: portal_defaults
-- The dealership's zone, for registrations without their own, and its default
-- language, named beside an unchosen one. Read as the relay's login role:
-- configuration, not a customer's data (RLS hides the row from customers).
-- dealership_phone: the number the page gives a customer whose registration
-- needs their attention.
SELECT default_time_zone, default_language, dealership_phone
FROM public.notification_config LIMIT 1;
