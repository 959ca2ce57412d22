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
       coalesce(o.opted_out, false) AS sms_opted_out
FROM public.registrations AS r
LEFT JOIN public.registration_stages AS st ON st.stage = r.current_stage
LEFT JOIN public.sms_opt_outs AS o ON o.phone = r.customer_phone
WHERE r.id = %(registration_id)s::uuid;

-- name: status_registration_queue
-- Every burst of stage changes for one registration, oldest first.
SELECT q.id,
       q.created_at,
       q.updated_at,
       q.old_stage,
       q.new_stage,
       q.change_count,
       q.notify_customer,
       q.send_after,
       q.sent,
       q.closed_reason,
       q.processed_at
FROM public.notification_queue AS q
WHERE q.registration_id = %(registration_id)s::uuid
ORDER BY q.created_at, q.id;

-- name: status_registration_deliveries
-- Every delivery row of one registration; queue_id ties each to its burst.
SELECT n.id,
       n.queue_id,
       n.channel,
       n.recipient,
       n.status,
       n.skip_reason,
       n.old_stage,
       n.new_stage,
       n.provider,
       n.provider_message_id,
       n.template_used,
       n.subject,
       n.attempts,
       n.error_code,
       n.error_message,
       n.next_attempt_at,
       n.created_at,
       n.updated_at,
       n.sent_at,
       n.delivered_at,
       -- Quiet hours and fallback (migration 10): the opening time in the
       -- customer's zone, and the deliveries a fallback links.
       n.hold_reason,
       n.held_until,
       n.hold_zone,
       to_char(n.held_until AT TIME ZONE n.hold_zone, 'HH24:MI') AS held_until_local,
       n.fallback_for,
       fb.channel AS fallback_for_channel,
       fb.status AS fallback_for_status,
       fb.error_code AS fallback_for_error_code,
       (SELECT x.id FROM public.registration_notifications AS x
        WHERE x.fallback_for = n.id) AS replaced_by,
       n.outcome_unknown,
       -- Skipped for the preference after it was written (at its claim for
       -- sending): the change that did it, from migration 12's audit.
       pc.changed_at AS pref_changed_at,
       pc.old_pref AS pref_changed_from,
       pc.new_pref AS pref_changed_to,
       pc.changed_by_kind AS pref_changed_by_kind
FROM public.registration_notifications AS n
LEFT JOIN public.registration_notifications AS fb ON fb.id = n.fallback_for
LEFT JOIN LATERAL (
    SELECT c.changed_at, c.old_pref, c.new_pref, c.changed_by_kind
    FROM public.notification_pref_changes AS c
    WHERE n.status = 'skipped' AND n.skip_reason = 'preference'
      AND c.registration_id = n.registration_id
      AND c.changed_at >= n.created_at AND c.changed_at <= n.updated_at
    ORDER BY c.changed_at DESC, c.id DESC
    LIMIT 1
) AS pc ON true
WHERE n.registration_id = %(registration_id)s::uuid
ORDER BY n.queue_id NULLS LAST, CASE n.channel WHEN 'sms' THEN 0 ELSE 1 END, n.id;

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

-- name: status_registration_pref_changes
-- Who changed the registration's notification_pref and when (migration 12's
-- audit): a customer from the portal, staff, the backend or a direct connection.
SELECT c.id,
       c.changed_at,
       c.old_pref,
       c.new_pref,
       c.changed_by_kind,
       c.changed_by
FROM public.notification_pref_changes AS c
WHERE c.registration_id = %(registration_id)s::uuid
ORDER BY c.changed_at, c.id;
