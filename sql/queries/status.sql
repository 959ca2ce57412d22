-- `regnotify status` and `regnotify retry-failed`: read-only views of the
-- queue and the delivery audit for people answering "why didn't this customer
-- get a text?". Times are measured on the database's clock, the one
-- send_after and the audit timestamps were written with.

-- name: status_queue_summary
-- Pending rows, how many of them are due, how long the oldest due one has
-- waited past its send_after (a healthy pipeline keeps this under a tick),
-- and when the next not-yet-due one will be.
SELECT count(*) AS pending,
       count(*) FILTER (WHERE send_after <= now()) AS due_now,
       extract(epoch FROM now() - min(send_after) FILTER (WHERE send_after <= now()))::float8
           AS oldest_due_age_s,
       extract(epoch FROM min(send_after) FILTER (WHERE send_after > now()) - now())::float8
           AS next_due_in_s,
       now() AS measured_at
FROM public.notification_queue
WHERE sent = false;

-- name: status_delivery_counts
-- Deliveries created in the window, by channel and status.
SELECT channel, status, count(*) AS n
FROM public.registration_notifications
WHERE created_at >= now() - make_interval(secs => %(window_s)s)
GROUP BY channel, status
ORDER BY channel, status;

-- name: status_recent_failed
-- The newest final send failures: what retry-failed would re-drive.
SELECT n.id,
       n.registration_id,
       r.customer_name,
       n.channel,
       n.recipient,
       n.new_stage,
       n.error_code,
       n.error_message,
       n.attempts,
       n.updated_at AS failed_at,
       n.outcome_unknown
FROM public.registration_notifications AS n
LEFT JOIN public.registrations AS r ON r.id = n.registration_id
WHERE n.status = 'failed'
ORDER BY n.updated_at DESC, n.id DESC
LIMIT %(limit)s;

-- name: status_retrying
-- Deliveries still moving that hit a transient error and wait for their next
-- attempt (schedule_retry set next_attempt_at), soonest first.
SELECT n.id,
       n.registration_id,
       r.customer_name,
       n.channel,
       n.recipient,
       n.status,
       n.attempts,
       n.error_code,
       n.error_message,
       n.next_attempt_at
FROM public.registration_notifications AS n
LEFT JOIN public.registrations AS r ON r.id = n.registration_id
WHERE n.status IN ('queued', 'sending')
  AND n.next_attempt_at IS NOT NULL
ORDER BY n.next_attempt_at, n.id
LIMIT %(limit)s;

-- name: status_registration
SELECT r.id,
       r.customer_name,
       r.customer_phone,
       r.customer_email,
       r.notification_pref,
       r.current_stage,
       st.label AS current_stage_label,
       r.vehicle_year,
       r.vehicle_make,
       r.vehicle_model,
       r.vin,
       r.plate_number,
       r.created_at,
       r.updated_at,
       coalesce(o.opted_out, false) AS sms_opted_out,
       -- NULL language: the configured default (migration 17).
       r.language,
       coalesce(r.language, (SELECT c.default_language FROM public.notification_config AS c),
                'en') AS effective_language
FROM public.registrations AS r
LEFT JOIN public.registration_stages AS st ON st.stage = r.current_stage
LEFT JOIN public.sms_opt_outs AS o ON o.phone = r.customer_phone
WHERE r.id = %(registration_id)s::uuid;

-- name: status_deliveries_by_id
-- What retry-failed shows about the deliveries it re-drives, read before the
-- requeue clears their error.
SELECT n.id,
       n.registration_id,
       r.customer_name,
       n.channel,
       n.recipient,
       n.new_stage,
       n.error_code,
       n.error_message,
       n.attempts,
       n.updated_at AS failed_at,
       n.outcome_unknown
FROM public.registration_notifications AS n
LEFT JOIN public.registrations AS r ON r.id = n.registration_id
WHERE n.id = ANY(%(ids)s)
ORDER BY n.id;
