-- Customers' replies (migration 16): keeping them, telling staff, the timeline.

-- name: reply_lock_number
-- One inbound text per number at a time: the digest upsert and the "passed
-- on" answer (at most once per reply_ack_every) read what the last one wrote.
SELECT pg_advisory_xact_lock(hashtextextended('regnotify-reply:' || %(from_phone)s, 0));

-- name: reply_insert
-- Stores the text once per MessageSid; nothing comes back for a retry of one
-- already stored. The keyword is the trimmed body, any case, in one of the
-- configured lists; Twilio's OptOutType (Advanced Opt-Out, which knows the
-- Messaging Service's own keywords) wins when it came.
-- A MessageSid is stored only the first time it is ever seen: seen_message_sids
-- (migration 22) remembers it after retention prunes the row, so a captured
-- request replayed later stores nothing (Twilio's signatures carry no time).
WITH seen AS (
    INSERT INTO public.seen_message_sids (sid_digest)
    VALUES (substring(sha256(convert_to(%(message_sid)s, 'UTF8')) FROM 1 FOR 16))
    ON CONFLICT (sid_digest) DO NOTHING
    RETURNING 1
), cfg AS (
    SELECT c.opt_out_keywords, c.opt_in_keywords, c.help_keywords
    FROM public.notification_config AS c
    WHERE c.id
), word AS (
    SELECT upper(btrim(%(body)s, E' \t\r\n')) AS w
), kind AS (
    SELECT w, coalesce(
        %(twilio_kind)s::text,
        CASE
            WHEN w = ANY (SELECT upper(k) FROM cfg, unnest(cfg.opt_out_keywords) AS k)
                THEN 'opt_out'
            WHEN w = ANY (SELECT upper(k) FROM cfg, unnest(cfg.opt_in_keywords) AS k)
                THEN 'opt_in'
            WHEN w = ANY (SELECT upper(k) FROM cfg, unnest(cfg.help_keywords) AS k)
                THEN 'help'
        END) AS k
    FROM word
)
INSERT INTO public.inbound_messages
    (message_sid, from_phone, to_phone, body, registration_id, keyword, keyword_kind)
SELECT %(message_sid)s, %(from_phone)s, %(to_phone)s, %(body)s,
       (SELECT r.id FROM public.registrations AS r
        WHERE r.customer_phone = %(from_phone)s
        ORDER BY r.updated_at DESC, r.created_at DESC
        LIMIT 1),
       CASE WHEN kind.k IS NOT NULL THEN left(kind.w, 64) END,
       kind.k
FROM kind
WHERE EXISTS (SELECT 1 FROM seen)
ON CONFLICT (message_sid) DO NOTHING
RETURNING id, registration_id, keyword, keyword_kind, acknowledged_at;

-- name: reply_by_sid
SELECT id, registration_id, keyword, keyword_kind, acknowledged_at
FROM public.inbound_messages
WHERE message_sid = %(message_sid)s;

-- name: reply_settings
SELECT staff_email, help_reply, dealership_phone, reply_ack_every
FROM public.notification_config
WHERE id;

-- name: reply_join_digest
-- The number's pending digest (a new one, or this reply pushes its send_after
-- out by the debounce window, never past max_wait after its first reply).
WITH cfg AS (
    SELECT c.debounce_window, c.max_wait FROM public.notification_config AS c WHERE c.id
), digest AS (
    INSERT INTO public.reply_digests AS d (from_phone, registration_id, send_after)
    SELECT %(from_phone)s, %(registration_id)s::uuid, now() + cfg.debounce_window FROM cfg
    ON CONFLICT (from_phone) WHERE (status = 'pending')
    DO UPDATE SET
        send_after = least(EXCLUDED.send_after,
                           d.first_at + (SELECT cfg.max_wait FROM cfg)),
        reply_count = d.reply_count + 1,
        registration_id = coalesce(EXCLUDED.registration_id, d.registration_id),
        updated_at = now()
    RETURNING d.id, d.send_after
)
UPDATE public.inbound_messages AS m
SET digest_id = digest.id
FROM digest
WHERE m.id = %(id)s
RETURNING digest.id AS digest_id, digest.send_after;

-- name: reply_acknowledge
-- Marks this reply as answered with "passed on" unless the number heard that
-- within reply_ack_every; returns a row only when it should be answered.
UPDATE public.inbound_messages AS m
SET acknowledged_at = now()
FROM public.notification_config AS c
WHERE m.id = %(id)s
  AND c.id
  AND c.reply_ack_every IS NOT NULL
  AND c.staff_email IS NOT NULL
  AND NOT EXISTS (
      SELECT 1 FROM public.inbound_messages AS o
      WHERE o.from_phone = m.from_phone
        AND o.id <> m.id
        AND o.acknowledged_at > now() - c.reply_ack_every)
RETURNING m.acknowledged_at;

-- name: reply_digests_claim_lock
-- One claim at a time: the hourly cap counts what the claims before took.
SELECT pg_advisory_xact_lock(hashtextextended('regnotify-reply-digest-claim', 0));

-- name: reply_digests_claim
-- Due digests, and digests whose send lost its lease (a worker died): taken
-- for one send task, with the staff address of this moment. New ones only
-- while the hour's e-mails to staff stay under notification_config's
-- staff_digest_hourly_cap (migration 22); the rest wait for the summary.
-- A lapsed summary digest is the summary's to take again (reply_summary_claim).
UPDATE public.reply_digests AS d
SET status = 'sending',
    recipient = coalesce(d.recipient, c.staff_email),
    claim_token = %(token)s,
    lease_until = now() + make_interval(secs => %(lease_s)s),
    claimed_at = coalesce(d.claimed_at, now()),
    updated_at = now()
FROM public.notification_config AS c
WHERE c.id
  AND d.id = ANY (ARRAY(
      SELECT o.id FROM public.reply_digests AS o
      WHERE o.status = 'sending' AND o.lease_until < now() AND NOT o.in_summary
      ORDER BY o.send_after
      LIMIT %(limit)s
      FOR UPDATE SKIP LOCKED)
    || ARRAY(
      SELECT o.id FROM public.reply_digests AS o
      WHERE o.status = 'pending' AND o.send_after <= now()
      ORDER BY o.send_after
      LIMIT (SELECT CASE WHEN k.staff_digest_hourly_cap IS NULL THEN %(limit)s
                         ELSE greatest(0, least(%(limit)s, k.staff_digest_hourly_cap - (
                             SELECT count(*) FROM public.reply_digests AS h
                             WHERE NOT h.in_summary
                               AND h.claimed_at > now() - interval '1 hour')))
                    END
             FROM public.notification_config AS k WHERE k.id)
      FOR UPDATE SKIP LOCKED))
RETURNING d.id, d.recipient;

-- name: reply_summary_claim
-- What the cap held back, taken as ONE summary e-mail, at most one an hour:
-- every due digest still pending after reply_digests_claim, and a lapsed
-- summary's digests. Nothing when a summary went out within the hour.
UPDATE public.reply_digests AS d
SET status = 'sending',
    in_summary = true,
    recipient = coalesce(d.recipient, c.staff_email),
    claim_token = %(token)s,
    lease_until = now() + make_interval(secs => %(lease_s)s),
    claimed_at = coalesce(d.claimed_at, now()),
    updated_at = now()
FROM public.notification_config AS c
WHERE c.id
  AND c.staff_digest_hourly_cap IS NOT NULL
  AND d.id = ANY (ARRAY(
      SELECT o.id FROM public.reply_digests AS o
      WHERE (o.status = 'pending' AND o.send_after <= now()
             -- only once the hour's own e-mails reached the cap
             AND (SELECT count(*) FROM public.reply_digests AS h
                  WHERE NOT h.in_summary AND h.claimed_at > now() - interval '1 hour')
                 >= c.staff_digest_hourly_cap
             AND NOT EXISTS (SELECT 1 FROM public.reply_digests AS s
                             WHERE s.in_summary AND s.claimed_at > now() - interval '1 hour'))
         OR (o.status = 'sending' AND o.in_summary AND o.lease_until < now())
      ORDER BY o.send_after
      FOR UPDATE SKIP LOCKED))
RETURNING d.id, d.recipient;

-- name: reply_summary_defer
-- Held back while the hour's summary is out: due again when the next may go.
UPDATE public.reply_digests AS d
SET send_after = greatest(d.send_after, (
        SELECT max(s.claimed_at) + interval '1 hour' FROM public.reply_digests AS s
        WHERE s.in_summary)),
    updated_at = now()
WHERE d.status = 'pending' AND d.send_after <= now()
  AND EXISTS (SELECT 1 FROM public.reply_digests AS s
              WHERE s.in_summary AND s.claimed_at > now() - interval '1 hour');

-- name: reply_digests_next_due
-- The next pending digest, or the next lease to lapse: a digest parked
-- beyond the broker's horizon waits as a lease and the queue run takes it
-- again when the lease ends (reply_digests_claim), so its wake-up is that time.
SELECT extract(epoch FROM min(due) - now())::float8 AS seconds
FROM (SELECT min(send_after) AS due FROM public.reply_digests WHERE status = 'pending'
      UNION ALL
      SELECT min(lease_until) FROM public.reply_digests
      WHERE status = 'sending' AND NOT in_summary) AS next;

-- name: reply_digests_take
-- The send task's own digests (its claim's token), still sending, freshly leased.
UPDATE public.reply_digests AS d
SET lease_until = now() + make_interval(secs => %(lease_s)s),
    updated_at = now()
WHERE d.id = ANY (%(ids)s) AND d.status = 'sending' AND d.claim_token = %(token)s
RETURNING d.id, d.from_phone, d.registration_id, d.recipient, d.attempts, d.first_at,
          d.in_summary;

-- name: reply_digests_extend
-- Waiting for a rate slot or a backoff: the lease covers the wait, so the
-- queue run does not take the digest again meanwhile.
UPDATE public.reply_digests
SET lease_until = now() + make_interval(secs => %(lease_s)s),
    error_code = coalesce(%(code)s, error_code),
    error_message = coalesce(%(message)s, error_message),
    updated_at = now()
WHERE id = ANY (%(ids)s) AND status = 'sending';

-- name: reply_digest_messages
SELECT m.digest_id, m.body, m.received_at, m.to_phone, m.id
FROM public.inbound_messages AS m
WHERE m.digest_id = ANY (%(ids)s)
ORDER BY m.digest_id, m.received_at, m.id;

-- name: reply_registration
SELECT r.id, r.customer_name, r.customer_email, r.vehicle_year, r.vehicle_make,
       r.vehicle_model, r.plate_number, r.current_stage, s.label AS stage_label
FROM public.registrations AS r
LEFT JOIN public.registration_stages AS s ON s.stage = r.current_stage
WHERE r.id = %(id)s;

-- name: reply_digest_sent
UPDATE public.reply_digests
SET status = 'sent', provider_message_id = %(message_id)s, sent_at = now(),
    lease_until = NULL, error_code = NULL, error_message = NULL, updated_at = now()
WHERE id = %(id)s AND status = 'sending';

-- name: reply_digest_failed
UPDATE public.reply_digests
SET status = 'failed', lease_until = NULL, error_code = %(code)s,
    error_message = %(message)s, updated_at = now()
WHERE id = %(id)s AND status = 'sending';

-- name: reply_timeline
-- A registration's replies for `regnotify status`, with what became of the
-- e-mail to staff.
SELECT r.at AS received_at, r.keyword, r.keyword_kind, r.body,
       d.status AS forwarded_status, d.sent_at AS forwarded_at, d.recipient AS forwarded_to
FROM public.registration_replies AS r
LEFT JOIN public.reply_digests AS d ON d.id = r.digest_id
WHERE r.registration_id = %(registration_id)s
ORDER BY r.at, r.message_sid;

-- name: metrics_replies
-- Inbound texts of the last 24 hours by kind, and whether the number was known.
SELECT coalesce(keyword_kind, 'reply') AS kind,
       CASE WHEN registration_id IS NULL THEN 'unknown' ELSE 'customer' END AS sender,
       count(*) AS replies
FROM public.inbound_messages
WHERE received_at > now() - interval '24 hours'
GROUP BY 1, 2;

-- name: metrics_reply_digests
-- E-mails to staff about replies: open now, and sent or failed in 24 hours.
SELECT status, count(*) AS digests
FROM public.reply_digests
WHERE status IN ('pending', 'sending') OR updated_at > now() - interval '24 hours'
GROUP BY status;
