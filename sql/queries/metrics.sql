-- What GET /metrics reports from the database (the truth, whichever process did the work).

-- name: metrics_queue
SELECT count(*) AS pending,
       count(*) FILTER (WHERE send_after <= now()) AS due,
       coalesce(extract(epoch FROM now() - min(send_after) FILTER (WHERE send_after <= now())),
                0)::float8 AS oldest_due_age_s
FROM public.notification_queue
WHERE sent = false;

-- name: metrics_deliveries
-- Deliveries created in the last 24 hours, by channel and status, with the
-- retries they needed (attempts beyond the first).
SELECT channel, status, count(*) AS deliveries,
       coalesce(sum(greatest(attempts - 1, 0)), 0) AS retries
FROM public.registration_notifications
WHERE created_at > now() - interval '24 hours'
GROUP BY channel, status;

-- name: metrics_held
-- Deliveries held for quiet hours right now, by channel (migration 10).
SELECT channel, count(*) AS held
FROM public.registration_notifications
WHERE hold_reason IS NOT NULL
GROUP BY channel;

-- name: metrics_outcome_unknown
-- Failed deliveries whose last attempt may have been accepted, by channel:
-- not sent again, waiting for staff (retry-failed re-drives them).
-- ix_registration_notifications_outcome_unknown (migration 14) holds only these.
SELECT channel, count(*) AS unknown
FROM public.registration_notifications
WHERE status = 'failed' AND outcome_unknown
GROUP BY channel;
