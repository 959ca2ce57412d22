-- The sign-in statements that are not coordination state. The sign-in
-- counters themselves are gates of the coordination store (see
-- tasks.portal.limits; in PostgreSQL, gate_depart in coordination.sql).

-- name: customer_subject
-- The random `sub` of regnotify's sessions for a number, made on its first
-- sign-in (migration 22). Never derived from the number.
INSERT INTO public.customer_subjects (phone) VALUES (%(phone)s)
ON CONFLICT (phone) DO UPDATE SET last_sign_in_at = now()
RETURNING subject::text AS subject;
