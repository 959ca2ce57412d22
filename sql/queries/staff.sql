-- The staff console (tasks/staff). Every query but staff_member_active runs as
-- the signed-in caller (db.as_caller): row-level security and migration 21's
-- functions decide what exists for them and what they may do.

-- name: staff_code_put
-- The address's new code replaces its last; expired codes of anyone go.
WITH gone AS (
    DELETE FROM public.staff_sign_in_codes WHERE expires_at < now() AND key <> %(key)s
)
INSERT INTO public.staff_sign_in_codes (key, digest, expires_at)
VALUES (%(key)s, %(digest)s, now() + make_interval(secs => %(ttl_s)s))
ON CONFLICT (key) DO UPDATE SET digest = excluded.digest, expires_at = excluded.expires_at;

-- name: staff_code_take
-- A row back: the code was the address's live one, and is now used.
DELETE FROM public.staff_sign_in_codes
WHERE key = %(key)s AND digest = %(digest)s AND expires_at > now()
RETURNING 1 AS used;

-- name: staff_code_forget
DELETE FROM public.staff_sign_in_codes WHERE key = %(key)s;

-- name: staff_member_active
-- Before a code is sent, on the relay's own login: nobody is signed in yet.
SELECT 1 FROM public.staff_members WHERE email = lower(%(email)s) AND active;

-- name: staff_me
SELECT public.staff_me();

-- name: staff_attention_count
-- What the header counts: the same rows as the attention page (both partial
-- indexes of migration 21 hold exactly these), counted up to 1000 so that a
-- long unhandled history costs the header no more than that ("999+").
SELECT (SELECT count(*) FROM (
            SELECT 1 FROM public.registration_notifications AS n
            WHERE n.handled_at IS NULL
              AND (n.status IN ('failed', 'bounced', 'complained') OR n.skip_reason = 'opted_out')
            LIMIT 1000) AS d)
     + (SELECT count(*) FROM (
            SELECT 1 FROM public.inbound_messages AS m
            WHERE m.handled_at IS NULL AND m.keyword_kind IS NULL
            LIMIT 1000) AS r);

-- name: staff_messages
-- Newest first by the keyset (created_at, id): a page costs the same however
-- deep it is. Filters are optional; the plan is made for each call's values.
-- The page is chosen first and only its rows are joined to names and labels.
WITH page AS (
    SELECT n.id, n.registration_id, n.created_at, n.channel, n.status, n.skip_reason,
           n.error_code, n.error_message, n.outcome_unknown, n.old_stage, n.new_stage,
           n.hold_reason, n.held_until, n.hold_zone
    FROM public.registration_notifications AS n
    WHERE (%(status)s::text IS NULL OR n.status = %(status)s::text)
      AND (%(channel)s::text IS NULL OR n.channel = %(channel)s::text)
      AND (%(since)s::timestamptz IS NULL OR n.created_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR n.created_at < %(until)s::timestamptz)
      AND (%(before_at)s::timestamptz IS NULL
           OR (n.created_at, n.id) < (%(before_at)s::timestamptz, %(before_id)s::bigint))
    ORDER BY n.created_at DESC, n.id DESC
    LIMIT %(limit)s
)
SELECT page.*, r.customer_name, st.label AS stage_label
FROM page
JOIN public.registrations AS r ON r.id = page.registration_id
LEFT JOIN public.registration_stages AS st ON st.stage = page.new_stage
ORDER BY page.created_at DESC, page.id DESC;

-- name: staff_messages_found
-- The same, for the registrations one search found (ids from
-- regnotify_staff.find_registrations; the rows are read here under RLS).
WITH found AS MATERIALIZED (
    SELECT f.id
    FROM regnotify_staff.find_registrations(%(phone)s::text, %(email)s::text, %(vin)s::text,
                                            %(name)s::text) AS f (id)
),
page AS (
    SELECT n.id, n.registration_id, n.created_at, n.channel, n.status, n.skip_reason,
           n.error_code, n.error_message, n.outcome_unknown, n.old_stage, n.new_stage,
           n.hold_reason, n.held_until, n.hold_zone
    FROM found
    JOIN public.registration_notifications AS n ON n.registration_id = found.id
    WHERE (%(status)s::text IS NULL OR n.status = %(status)s::text)
      AND (%(channel)s::text IS NULL OR n.channel = %(channel)s::text)
      AND (%(since)s::timestamptz IS NULL OR n.created_at >= %(since)s::timestamptz)
      AND (%(until)s::timestamptz IS NULL OR n.created_at < %(until)s::timestamptz)
      AND (%(before_at)s::timestamptz IS NULL
           OR (n.created_at, n.id) < (%(before_at)s::timestamptz, %(before_id)s::bigint))
    ORDER BY n.created_at DESC, n.id DESC
    LIMIT %(limit)s
)
SELECT page.*, r.customer_name, st.label AS stage_label
FROM page
JOIN public.registrations AS r ON r.id = page.registration_id
LEFT JOIN public.registration_stages AS st ON st.stage = page.new_stage
ORDER BY page.created_at DESC, page.id DESC;

-- name: staff_send_now
SELECT regnotify_staff.send_now(%(id)s::uuid, %(bypass)s::boolean);

-- name: staff_silence_next
SELECT regnotify_staff.silence_next(%(id)s::uuid);

-- name: staff_resend
SELECT regnotify_staff.resend(%(id)s::bigint);

-- name: staff_mark_handled
SELECT regnotify_staff.mark_handled(%(kind)s::text, %(id)s::bigint);

-- name: staff_attention_deliveries
SELECT n.id, n.registration_id, n.created_at, n.updated_at, n.channel, n.status,
       n.skip_reason, n.error_code, n.error_message, n.outcome_unknown, n.new_stage,
       r.customer_name, st.label AS stage_label
FROM public.registration_notifications AS n
JOIN public.registrations AS r ON r.id = n.registration_id
LEFT JOIN public.registration_stages AS st ON st.stage = n.new_stage
WHERE n.handled_at IS NULL
  AND (n.status IN ('failed', 'bounced', 'complained') OR n.skip_reason = 'opted_out')
ORDER BY n.created_at DESC, n.id DESC
LIMIT 200;

-- name: staff_attention_replies
SELECT m.id, m.registration_id, m.from_phone, m.body, m.received_at, r.customer_name
FROM public.inbound_messages AS m
LEFT JOIN public.registrations AS r ON r.id = m.registration_id
WHERE m.handled_at IS NULL AND m.keyword_kind IS NULL
ORDER BY m.received_at DESC, m.id DESC
LIMIT 200;

-- name: staff_replies
-- %(handled)s: NULL all, true handled only, false not yet handled.
-- Who handled a reply is in staff_actions (admin only), not on the row,
-- which its customer may read.
SELECT m.id, m.registration_id, m.from_phone, m.body, m.received_at, m.keyword,
       m.keyword_kind, m.handled_at, who.actor_email AS handled_by, r.customer_name
FROM public.inbound_messages AS m
LEFT JOIN public.registrations AS r ON r.id = m.registration_id
LEFT JOIN LATERAL (
    SELECT a.actor_email FROM public.staff_actions AS a
    WHERE m.handled_at IS NOT NULL AND a.action = 'mark_handled'
      AND a.detail ->> 'kind' = 'reply' AND a.detail ->> 'id' = m.id::text
    ORDER BY a.at DESC LIMIT 1) AS who ON true
WHERE (%(handled)s::boolean IS NULL OR (m.handled_at IS NOT NULL) = %(handled)s::boolean)
ORDER BY m.received_at DESC, m.id DESC
LIMIT 300;

-- name: staff_queue_bursts
SELECT q.id, q.registration_id, q.old_stage, q.new_stage, q.change_count, q.notify_customer,
       q.send_after, q.created_at, q.bypass_quiet_hours, r.customer_name, st.label AS stage_label
FROM public.notification_queue AS q
JOIN public.registrations AS r ON r.id = q.registration_id
LEFT JOIN public.registration_stages AS st ON st.stage = q.new_stage
WHERE q.sent = false
ORDER BY q.send_after
LIMIT 200;

-- name: staff_queue_held
SELECT n.id, n.registration_id, n.channel, n.held_until, n.hold_zone, n.new_stage,
       pg_catalog.to_char(n.held_until AT TIME ZONE n.hold_zone, 'HH24:MI') AS held_until_local,
       r.customer_name, st.label AS stage_label
FROM public.registration_notifications AS n
JOIN public.registrations AS r ON r.id = n.registration_id
LEFT JOIN public.registration_stages AS st ON st.stage = n.new_stage
WHERE n.hold_reason IS NOT NULL AND n.status = 'queued'
ORDER BY n.held_until
LIMIT 200;

-- name: staff_registration_zone
-- The quiet-hours zone a registration's messages follow (its own, else the dealership's).
SELECT coalesce(r.time_zone, c.default_time_zone) AS zone
FROM public.registrations AS r
LEFT JOIN public.notification_config AS c ON c.id
WHERE r.id = %(id)s::uuid;

-- name: staff_add
-- Adding a removed member again makes them active again, under the new name.
INSERT INTO public.staff_members (email, name)
VALUES (lower(%(email)s), %(name)s)
ON CONFLICT (email) DO UPDATE
SET name = EXCLUDED.name, active = true, removed_at = NULL
RETURNING email, name, (xmax = 0) AS created;

-- name: staff_remove
-- Kept, inactive, so the actions log still names who did what.
UPDATE public.staff_members SET active = false, removed_at = now()
WHERE email = lower(%(email)s) AND active
RETURNING email;

-- name: staff_list
SELECT email, name, active, created_at, removed_at
FROM public.staff_members
ORDER BY active DESC, email;
