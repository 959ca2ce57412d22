-- One delivery (a registration_notifications row) through its send.
-- Every write is guarded by the status it expects, so a stale or duplicated
-- task can never move a delivery backwards.

-- name: claim_delivery
-- Takes the lease and counts the attempt before the provider is called; the
-- rendered message is stored so a later retry can recognise it at Twilio.
-- Consent is checked here, in the claim itself, against the registration as
-- it is now: a preference, opt-out or contact changed while the delivery
-- waited (quiet hours, a rate slot, a retry, a re-drive) ends it `skipped`
-- in this statement, by the one consent rule (public.regnotify_skip_reason,
-- migration 27) the queue claim applied when it wrote the row. One row back:
-- claimed (attempts set), skipped (skip_reason set), or `moved` (the address
-- changed since the message was rendered: render again). No row: another
-- worker holds it, or it has moved on. was_unknown and previous_attempt_at
-- are the row's own before this claim (another task may have attempted it
-- since the caller loaded it): they say whether to look for that attempt.
-- Quiet hours are checked here too, on the customer's zone at this moment
-- (public.regnotify_now(), migration 23): a retry, a parked or re-driven
-- delivery that comes due inside the window is parked until it closes
-- (`quiet_until` set), unless staff sent its burst with --now.
WITH cfg AS (
    SELECT c.quiet_hours_start, c.quiet_hours_end, c.quiet_hours_channels, c.default_time_zone
    FROM (SELECT true AS one) AS x
    LEFT JOIN public.notification_config AS c ON c.id
),
target AS (
    SELECT n.id,
           n.outcome_unknown AS was_unknown,
           n.last_attempt_at AS previous_attempt_at,
           public.regnotify_skip_reason(n.channel, r.notification_pref, r.customer_phone,
                                        r.customer_email, n.fallback_for IS NOT NULL)
               AS skip_reason,
           CASE n.channel WHEN 'sms' THEN r.customer_phone ELSE r.customer_email END
               IS DISTINCT FROM %(recipient)s AS moved,
           coalesce(r.time_zone, cfg.default_time_zone) AS zone,
           CASE WHEN n.channel = ANY(cfg.quiet_hours_channels)
                     AND NOT coalesce(q.bypass_quiet_hours, false)
                THEN public.quiet_hours_release_now(
                         coalesce(r.time_zone, cfg.default_time_zone),
                         cfg.quiet_hours_start, cfg.quiet_hours_end)
           END AS quiet_until
    FROM public.registration_notifications AS n
    JOIN public.registrations AS r ON r.id = n.registration_id
    LEFT JOIN public.notification_queue AS q ON q.id = n.queue_id
    CROSS JOIN cfg
    WHERE n.id = %(id)s
      AND n.status IN ('queued', 'sending')
      AND (n.lease_until IS NULL OR n.lease_until <= now())
      -- Held for quiet hours: only release_held_due lets it go (a stray task waits).
      AND n.hold_reason IS NULL
    FOR UPDATE OF n
),
skipped AS (
    UPDATE public.registration_notifications AS n
    SET status          = 'skipped',
        skip_reason     = t.skip_reason,
        lease_until     = NULL,
        next_attempt_at = NULL,
        parked          = false,
        updated_at      = now()
    FROM target AS t
    WHERE n.id = t.id AND t.skip_reason IS NOT NULL AND n.status IN ('queued', 'sending')
    RETURNING n.id
),
quiet AS (
    UPDATE public.registration_notifications AS n
    SET next_attempt_at = t.quiet_until,
        parked          = true,
        lease_until     = NULL,
        held_until      = t.quiet_until,
        hold_zone       = t.zone,
        updated_at      = now()
    FROM target AS t
    WHERE n.id = t.id AND t.skip_reason IS NULL AND t.quiet_until IS NOT NULL
      AND n.status IN ('queued', 'sending')
    RETURNING n.id
),
claimed AS (
    UPDATE public.registration_notifications AS n
    SET status          = 'sending',
        attempts        = n.attempts + 1,
        outcome_unknown = true,
        last_attempt_at = now(),
        next_attempt_at = NULL,
        parked          = false,
        lease_until     = now() + make_interval(secs => %(lease_s)s),
        recipient       = %(recipient)s,
        provider        = %(provider)s,
        body            = %(body)s,
        subject         = %(subject)s,
        template_used   = %(template_used)s,
        language        = %(language)s,
        updated_at      = now()
    FROM target AS t
    WHERE n.id = t.id AND t.skip_reason IS NULL AND NOT t.moved AND t.quiet_until IS NULL
      AND n.status IN ('queued', 'sending')
    RETURNING n.attempts, n.attempts - n.attempts_at_redrive AS attempts_this_run,
              n.last_attempt_at, t.was_unknown, t.previous_attempt_at
)
SELECT c.attempts, c.attempts_this_run, c.last_attempt_at, c.was_unknown,
       c.previous_attempt_at, NULL::text AS skip_reason, false AS moved,
       NULL::timestamptz AS quiet_until
FROM claimed AS c
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, t.skip_reason,
       t.skip_reason IS NULL AND t.quiet_until IS NULL,
       CASE WHEN t.skip_reason IS NULL THEN t.quiet_until END
FROM target AS t
WHERE t.skip_reason IS NOT NULL OR t.moved OR t.quiet_until IS NOT NULL;

-- name: message_recorded_elsewhere
-- Whether another delivery already names this provider message: a lost
-- answer's lookup must not adopt a later burst's identical text.
SELECT EXISTS (
    SELECT 1 FROM public.registration_notifications AS n
    WHERE n.provider_message_id = %(provider_message_id)s AND n.id <> %(id)s
) AS recorded;

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

-- name: mark_sent_many
-- mark_sent for a batch's accepted e-mails, one statement for the batch.
UPDATE public.registration_notifications AS n
SET status              = CASE WHEN n.status IN ('queued', 'sending') THEN 'sent' ELSE n.status END,
    provider_message_id = u.provider_message_id,
    sent_at             = coalesce(n.sent_at, now()),
    outcome_unknown     = false,
    lease_until         = NULL,
    next_attempt_at     = NULL,
    error_code          = NULL,
    error_message       = NULL,
    updated_at          = now()
FROM unnest(%(ids)s::bigint[], %(provider_message_ids)s::text[])
     AS u (id, provider_message_id)
WHERE n.id = u.id;

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
-- outcome_unknown stays: a delivery skipped after an attempt whose answer was
-- lost (the customer withdrew consent meanwhile) may still have gone out, and
-- the audit must say so.
UPDATE public.registration_notifications
SET status          = 'skipped',
    skip_reason     = %(skip_reason)s,
    hold_reason     = NULL,
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
    parked          = %(parked)s,
    lease_until     = NULL,
    updated_at      = now()
WHERE id = %(id)s AND status = 'sending';

-- name: note_wait
-- A delivery waits for a rate slot (or is parked for one): say when, so the
-- sweep leaves it alone meanwhile. Never touches a lease another worker holds.
UPDATE public.registration_notifications
SET next_attempt_at = now() + make_interval(secs => %(countdown_s)s),
    parked          = %(parked)s,
    updated_at      = now()
WHERE id = ANY(%(ids)s)
  AND status IN ('queued', 'sending')
  AND (lease_until IS NULL OR lease_until <= now());

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
-- A batch member that ended `outcome_unknown` leaves its batch: no key
-- Resend recognises covers it any more, so it goes on its own (staff were
-- told it may arrive twice).
UPDATE public.registration_notifications AS n
SET status = 'queued', attempts_at_redrive = n.attempts, error_code = NULL,
    error_message = NULL, next_attempt_at = NULL, lease_until = NULL, updated_at = now(),
    email_batch_id = CASE WHEN n.error_code = 'outcome_unknown' THEN NULL
                          ELSE n.email_batch_id END
WHERE n.id = %(id)s AND n.status = 'failed'
RETURNING n.id, n.channel;

-- name: rate_limited
-- The provider answered 429: the call was a wait for a slot, not a failed
-- attempt. attempts keeps counting calls (the history shows it), and
-- attempts_at_redrive moves with it, so the retry budget does not count it.
-- outcome_unknown stays what it was before the call (a 429 accepted nothing).
UPDATE public.registration_notifications
SET attempts_at_redrive = attempts_at_redrive + 1,
    outcome_unknown     = %(outcome_unknown)s,
    error_code          = %(error_code)s,
    error_message       = %(error_message)s,
    lease_until         = NULL,
    updated_at          = now()
WHERE id = ANY(%(ids)s) AND status = 'sending';

-- name: release_parked
-- Parked deliveries whose time comes within %(horizon_s)s: unpark them and
-- say how far off each one's time is, so its task is published for it.
UPDATE public.registration_notifications AS n
SET parked = false, updated_at = now()
WHERE n.id = ANY(ARRAY(
    SELECT p.id
    FROM public.registration_notifications AS p
    WHERE p.parked
      AND p.status IN ('queued', 'sending')
      AND p.next_attempt_at <= now() + make_interval(secs => %(horizon_s)s)
    ORDER BY p.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
RETURNING n.id, n.channel,
          greatest(extract(epoch FROM n.next_attempt_at - now()), 0)::float8 AS in_s;

-- name: seconds_until_next_parked
SELECT extract(epoch FROM min(next_attempt_at) - now())::float8 AS seconds
FROM public.registration_notifications
WHERE parked AND status IN ('queued', 'sending');

-- name: lock_email_batch_candidates
-- E-mail deliveries a batch task may take: the ones it names and every
-- delivery still moving that was claimed into the same batch before (so a
-- retry sends the batch whole), skipping any another worker holds and any
-- held for quiet hours (the queue run releases those).
SELECT n.id, n.email_batch_id, n.outcome_unknown
FROM public.registration_notifications AS n
WHERE (n.id = ANY(%(ids)s)
       OR n.email_batch_id IN (SELECT b.email_batch_id
                               FROM public.registration_notifications AS b
                               WHERE b.id = ANY(%(ids)s) AND b.email_batch_id IS NOT NULL))
  AND n.channel = 'email'
  AND n.status IN ('queued', 'sending')
  AND (n.lease_until IS NULL OR n.lease_until <= now())
  AND n.hold_reason IS NULL
ORDER BY n.id
FOR UPDATE SKIP LOCKED;

-- name: email_batch_key_age
-- Seconds since the batch's Idempotency-Key first went to Resend (NULL:
-- claimed before the time was kept, so recently).
SELECT extract(epoch FROM now() - min(email_batch_keyed_at))::float8 AS age_s
FROM public.registration_notifications
WHERE email_batch_id = %(batch_id)s;

-- name: email_batch_member_ids
-- Every delivery ever claimed into a batch, whatever its status now.
SELECT id FROM public.registration_notifications WHERE email_batch_id = %(batch_id)s;

-- name: claim_email_batch
-- Persist the batch's membership and take every member's lease in one
-- statement, before Resend is called, with each member's consent checked
-- against the registration as it is now (public.regnotify_skip_reason). All
-- or nothing: when any member no longer matches (skipped here, in this
-- statement) or its address changed since the render, no member is taken,
-- so a batch never goes under a key with other members than the caller
-- chose. Rows back: the members taken (attempts_this_run), or the ones that
-- stopped it (skip_reason, or moved).
WITH target AS (
    SELECT n.id,
           u.recipient,
           u.body,
           u.subject,
           u.template_used,
           u.language,
           public.regnotify_skip_reason(n.channel, r.notification_pref, r.customer_phone,
                                        r.customer_email, n.fallback_for IS NOT NULL)
               AS skip_reason,
           r.customer_email IS DISTINCT FROM u.recipient AS moved
    FROM unnest(%(ids)s::bigint[], %(recipients)s::text[], %(bodies)s::text[],
                %(subjects)s::text[], %(templates)s::text[], %(languages)s::text[])
         AS u (id, recipient, body, subject, template_used, language)
    JOIN public.registration_notifications AS n ON n.id = u.id
    JOIN public.registrations AS r ON r.id = n.registration_id
    WHERE n.status IN ('queued', 'sending')
    FOR UPDATE OF n
),
stopped AS (
    SELECT count(*) AS n FROM target AS t WHERE t.skip_reason IS NOT NULL OR t.moved
),
skipped AS (
    UPDATE public.registration_notifications AS n
    SET status          = 'skipped',
        skip_reason     = t.skip_reason,
        lease_until     = NULL,
        next_attempt_at = NULL,
        parked          = false,
        updated_at      = now()
    FROM target AS t
    WHERE n.id = t.id AND t.skip_reason IS NOT NULL AND n.status IN ('queued', 'sending')
    RETURNING n.id
),
claimed AS (
    UPDATE public.registration_notifications AS n
    SET status          = 'sending',
        attempts        = n.attempts + 1,
        outcome_unknown = true,
        last_attempt_at = now(),
        next_attempt_at = NULL,
        parked          = false,
        lease_until     = now() + make_interval(secs => %(lease_s)s),
        email_batch_id  = %(batch_id)s,
        -- When the batch's Idempotency-Key first went to Resend, which
        -- forgets keys after 24 hours.
        email_batch_keyed_at = CASE WHEN n.email_batch_id IS NOT DISTINCT FROM %(batch_id)s
                                    THEN coalesce(n.email_batch_keyed_at, now())
                                    ELSE now() END,
        recipient       = t.recipient,
        provider        = %(provider)s,
        body            = t.body,
        subject         = t.subject,
        template_used   = t.template_used,
        language        = t.language,
        updated_at      = now()
    FROM target AS t
    WHERE n.id = t.id
      AND n.status IN ('queued', 'sending')
      AND (SELECT s.n FROM stopped AS s) = 0
    RETURNING n.id, n.attempts - n.attempts_at_redrive AS attempts_this_run
)
SELECT c.id, c.attempts_this_run, NULL::text AS skip_reason, false AS moved
FROM claimed AS c
UNION ALL
SELECT t.id, NULL, t.skip_reason, t.skip_reason IS NULL
FROM target AS t
WHERE t.skip_reason IS NOT NULL OR t.moved;

-- name: load_deliveries
-- What a send task needs to decide and render, with the registration's
-- current contact details (they may have changed since the claim). A
-- batch's worth; a single send runs it with `n.id =` its one id
-- (db.deliveries.load), which PostgreSQL plans once per connection where
-- `= ANY` of one id is planned again on every run.
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
       n.email_batch_id,
       n.fallback_for,
       (n.lease_until IS NOT NULL AND n.lease_until > now()) AS leased,
       (n.next_attempt_at IS NOT NULL
            AND n.next_attempt_at > now() + interval '2 seconds') AS retry_pending,
       r.notification_pref,
       r.customer_name,
       r.customer_phone,
       r.customer_email,
       r.vin,
       r.vehicle_year,
       r.vehicle_make AS make,
       r.vehicle_model AS model,
       r.plate_number,
       -- Labels in the message's language; a stage without a Spanish label
       -- keeps its English one.
       CASE WHEN lang.language = 'es' THEN coalesce(st.label_es, st.label)
            ELSE st.label END AS new_stage_label,
       CASE WHEN lang.language = 'es' THEN coalesce(so.label_es, so.label)
            ELSE so.label END AS old_stage_label,
       coalesce(o.opted_out, false) AS sms_opted_out,
       lang.language,
       (n.held_until IS NOT NULL) AS was_held,
       (n.fallback_for IS NOT NULL) AS is_fallback,
       -- Why it must not go out after all (the claim decides for good).
       public.regnotify_skip_reason(n.channel, r.notification_pref, r.customer_phone,
                                    r.customer_email, n.fallback_for IS NOT NULL) AS skip_reason
FROM public.registration_notifications AS n
JOIN public.registrations AS r ON r.id = n.registration_id
CROSS JOIN LATERAL (
    SELECT coalesce(r.language,
                    (SELECT c.default_language FROM public.notification_config AS c),
                    'en') AS language
) AS lang
LEFT JOIN public.registration_stages AS st ON st.stage = n.new_stage
LEFT JOIN public.registration_stages AS so ON so.stage = n.old_stage
LEFT JOIN public.sms_opt_outs AS o ON o.phone = r.customer_phone
WHERE n.id = ANY(%(ids)s)
ORDER BY n.id;

