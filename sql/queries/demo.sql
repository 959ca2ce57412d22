-- What `regnotify demo` shows while it runs.

-- name: demo_deliveries
-- A text held for quiet hours shows as 'held': the demo has nothing to wait for.
SELECT r.customer_name, n.registration_id, n.channel,
       CASE WHEN n.hold_reason IS NOT NULL THEN 'held' ELSE n.status END AS status,
       n.skip_reason,
       n.new_stage, n.provider, n.provider_message_id, n.body, n.subject, n.updated_at,
       q.change_count
FROM public.registration_notifications AS n
JOIN public.registrations AS r ON r.id = n.registration_id
JOIN public.notification_queue AS q ON q.id = n.queue_id
WHERE n.registration_id = ANY(%(ids)s::uuid[])
ORDER BY r.customer_name, n.channel;

-- name: demo_pending
SELECT count(*) AS pending
FROM public.notification_queue
WHERE registration_id = ANY(%(ids)s::uuid[]) AND sent = false;

-- name: demo_get_config
SELECT extract(epoch FROM debounce_window)::float8 AS window_s,
       extract(epoch FROM max_wait)::float8 AS max_wait_s
FROM public.notification_config WHERE id;

-- name: demo_set_config
UPDATE public.notification_config
SET debounce_window = make_interval(secs => %(window_s)s),
    max_wait = make_interval(secs => %(max_wait_s)s),
    updated_at = now()
WHERE id;

-- name: demo_insert_registration
INSERT INTO public.registrations
    (customer_name, customer_phone, customer_email, vehicle_year, vehicle_make,
     vehicle_model, notification_pref)
VALUES (%(name)s, %(phone)s, %(email)s, %(year)s, %(make)s, %(model)s, %(pref)s)
RETURNING id;

-- name: demo_change_stage
UPDATE public.registrations
SET current_stage = %(stage)s,
    pending_notify_customer = CASE WHEN %(silence)s THEN false END
WHERE id = %(id)s;
