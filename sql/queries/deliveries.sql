-- One delivery (a registration_notifications row) through its send.
-- Every write is guarded by the status it expects, so a stale or duplicated
-- task can never move a delivery backwards.

-- name: load_delivery
-- What a send task needs to decide and render, with the registration's
-- current contact details (they may have changed since the claim).
SELECT n.id,
       n.registration_id,
       n.channel,
       n.status,
       n.recipient,
       n.old_stage,
       n.new_stage,
       n.attempts,
       n.outcome_unknown,
       n.last_attempt_at,
       n.body,
       n.subject,
       n.provider,
       n.provider_message_id,
       (n.lease_until IS NOT NULL AND n.lease_until > now()) AS leased,
       (n.next_attempt_at IS NOT NULL
            AND n.next_attempt_at > now() + interval '2 seconds') AS retry_pending,
       r.customer_name,
       r.customer_phone,
       r.customer_email,
       r.vin,
       r.vehicle_year,
       r.vehicle_make AS make,
       r.vehicle_model AS model,
       r.plate_number,
       st.label AS new_stage_label,
       so.label AS old_stage_label,
       coalesce(o.opted_out, false) AS sms_opted_out
FROM public.registration_notifications AS n
JOIN public.registrations AS r ON r.id = n.registration_id
LEFT JOIN public.registration_stages AS st ON st.stage = n.new_stage
LEFT JOIN public.registration_stages AS so ON so.stage = n.old_stage
LEFT JOIN public.sms_opt_outs AS o ON o.phone = r.customer_phone
WHERE n.id = %(id)s;

-- name: claim_delivery
-- Takes the lease and counts the attempt before the provider is called; the
-- rendered message is stored so a later retry can recognise it at Twilio.
-- No row back means another worker holds it or it has moved on.
UPDATE public.registration_notifications
SET status          = 'sending',
    attempts        = attempts + 1,
    outcome_unknown = true,
    last_attempt_at = now(),
    next_attempt_at = NULL,
    lease_until     = now() + make_interval(secs => %(lease_s)s),
    recipient       = %(recipient)s,
    provider        = %(provider)s,
    body            = %(body)s,
    subject         = %(subject)s,
    template_used   = %(template_used)s,
    updated_at      = now()
WHERE id = %(id)s
  AND status IN ('queued', 'sending')
  AND (lease_until IS NULL OR lease_until <= now())
  -- Held for quiet hours: only release_held_due lets it go (a stray task waits).
  AND hold_reason IS NULL
RETURNING attempts, attempts - attempts_at_redrive AS attempts_this_run, last_attempt_at;

-- name: mark_sent
-- The provider accepted: a webhook may already have moved it further.
UPDATE public.registration_notifications
SET status              = CASE WHEN status IN ('queued', 'sending') THEN 'sent' ELSE status END,
    provider_message_id = %(provider_message_id)s,
    sent_at             = coalesce(sent_at, now()),
    outcome_unknown     = false,
    lease_until         = NULL,
    next_attempt_at     = NULL,
    error_code          = NULL,
    error_message       = NULL,
    updated_at          = now()
WHERE id = %(id)s;

-- name: mark_failed
-- outcome_unknown survives when the last attempt may have been accepted, so
-- a later re-drive (retry-failed) looks for the message before sending again.
UPDATE public.registration_notifications
SET status          = 'failed',
    error_code      = %(error_code)s,
    error_message   = %(error_message)s,
    outcome_unknown = %(outcome_unknown)s,
    lease_until     = NULL,
    next_attempt_at = NULL,
    updated_at      = now()
WHERE id = %(id)s AND status IN ('queued', 'sending');

-- name: mark_skipped
UPDATE public.registration_notifications
SET status          = 'skipped',
    skip_reason     = %(skip_reason)s,
    hold_reason     = NULL,
    outcome_unknown = false,
    lease_until     = NULL,
    next_attempt_at = NULL,
    updated_at      = now()
WHERE id = %(id)s
  AND status IN ('queued', 'sending')
  AND (lease_until IS NULL OR lease_until <= now());

-- name: schedule_retry
-- A transient error: keep `sending`, release the lease, and say when the next
-- attempt is due. outcome_unknown stays true when the provider may have
-- accepted (timeout, 5xx, dropped connection).
UPDATE public.registration_notifications
SET outcome_unknown = %(outcome_unknown)s,
    error_code      = %(error_code)s,
    error_message   = %(error_message)s,
    next_attempt_at = now() + make_interval(secs => %(countdown_s)s),
    lease_until     = NULL,
    updated_at      = now()
WHERE id = %(id)s AND status = 'sending';

-- name: release_lease
-- Give the delivery back untouched (a rate-limit wait, a shutdown).
UPDATE public.registration_notifications
SET lease_until = NULL,
    next_attempt_at = now() + make_interval(secs => %(countdown_s)s),
    updated_at = now()
WHERE id = %(id)s AND status IN ('queued', 'sending');

-- name: opt_out_phone
INSERT INTO public.sms_opt_outs (phone, opted_out, source, updated_at)
VALUES (%(phone)s, %(opted_out)s, %(source)s, now())
ON CONFLICT (phone) DO UPDATE
SET opted_out = EXCLUDED.opted_out, source = EXCLUDED.source, updated_at = now();

-- name: sweep_stale
-- Deliveries still moving whose task the broker may have lost: queued or
-- sending, no live lease, no retry scheduled in the future, untouched for
-- %(older_than_s)s seconds. Touching updated_at means each is re-dispatched
-- at most once per threshold, however often the tick runs. A delivery held
-- for quiet hours has no task to lose: release_held_due sends it.
UPDATE public.registration_notifications AS n
SET updated_at = now()
WHERE n.id = ANY(ARRAY(
    SELECT s.id
    FROM public.registration_notifications AS s
    WHERE s.status IN ('queued', 'sending')
      AND s.hold_reason IS NULL
      AND s.updated_at < now() - make_interval(secs => %(older_than_s)s)
      AND (s.lease_until IS NULL OR s.lease_until <= now())
      AND (s.next_attempt_at IS NULL
           OR s.next_attempt_at < now() - make_interval(secs => %(older_than_s)s))
    ORDER BY s.updated_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
RETURNING n.id, n.channel;

-- name: failed_deliveries
-- For retry-failed: failed deliveries, oldest first, filtered.
SELECT id, channel
FROM public.registration_notifications
WHERE status = 'failed'
  AND updated_at >= %(since)s
  AND (%(channel)s::text IS NULL OR channel = %(channel)s::text)
  AND (%(registration_id)s::uuid IS NULL OR registration_id = %(registration_id)s::uuid)
ORDER BY id;

-- name: requeue_failed
-- A fresh retry budget that keeps the history: attempts is never reset.
UPDATE public.registration_notifications
SET status = 'queued', attempts_at_redrive = attempts, error_code = NULL, error_message = NULL,
    next_attempt_at = NULL, lease_until = NULL, updated_at = now()
WHERE id = %(id)s AND status = 'failed'
RETURNING id, channel;
