-- The other channel when one fails for good (migration 10). One statement,
-- called by the send path (a permanent provider error) and by the status
-- webhooks (an undelivered/failed text, a bounced e-mail), in the same
-- transaction that recorded the failure.

-- name: fallback_for_failed
-- Turns the failed delivery's sibling -- the same burst's row for the other
-- channel, which the claim wrote `skipped` because the customer's preference
-- or a missing address left that channel out -- back into a `queued`
-- delivery with fallback_for = the failed one. Nothing happens unless:
--   * the failure is final: a text failed/undelivered with any code but the
--     opt-out 21610, or an e-mail failed or bounced (not a Transient bounce),
--     and the provider surely did not accept it (outcome_unknown is false);
--   * fallback_enabled, and the preference chooses some channel (not 'none');
--   * the customer has an address for the other channel;
--   * the customer's phone is not opted out (STOP or 21610): we neither text
--     them nor e-mail them instead of the text they refused;
--   * the sibling is still `skipped` for 'preference' or 'no_contact': a
--     sibling queued, sent, delivered or failed means the customer was already
--     reached, or tried, on that channel for this change;
--   * no newer burst has reached that channel since (it named a newer stage).
-- Idempotent: the sibling's `status = 'skipped'` guard is re-checked against
-- the newest row version when two webhooks race, and
-- uq_registration_notifications_fallback_for backs it up. A fallback that
-- falls in the customer's quiet hours is held like any delivery.
-- Returns the new delivery (id, channel, held) or no row.
WITH failed AS (
    SELECT f.id, f.queue_id, f.registration_id, f.channel
    FROM public.registration_notifications AS f
    WHERE f.id = %(id)s
      AND f.queue_id IS NOT NULL
      AND NOT f.outcome_unknown
      AND CASE f.channel
              WHEN 'sms' THEN f.status IN ('failed', 'undelivered')
                              AND coalesce(f.error_code, '') <> '21610'
              ELSE f.status = 'failed'
                   OR (f.status = 'bounced'
                       AND coalesce(f.error_code, '') NOT LIKE 'bounce:Transient%%')
          END
),
target AS (
    SELECT f.id AS failed_id,
           s.id AS sibling_id,
           CASE s.channel WHEN 'sms' THEN r.customer_phone ELSE r.customer_email END
               AS recipient,
           CASE WHEN s.channel = ANY(c.quiet_hours_channels)
                THEN public.quiet_hours_release_now(coalesce(r.time_zone, c.default_time_zone),
                                                    c.quiet_hours_start, c.quiet_hours_end)
           END AS held_until,
           coalesce(r.time_zone, c.default_time_zone) AS zone
    FROM failed AS f
    JOIN public.notification_config AS c ON c.id AND c.fallback_enabled
    JOIN public.registrations AS r ON r.id = f.registration_id
    JOIN public.registration_notifications AS s
         ON s.queue_id = f.queue_id AND s.channel <> f.channel
    WHERE s.status = 'skipped'
      AND s.skip_reason IN ('preference', 'no_contact')
      AND s.fallback_for IS NULL
      -- The consent rule for a fallback (migration 27): a preference that
      -- chooses some channel, an address, no opted-out phone.
      AND public.regnotify_skip_reason(s.channel, r.notification_pref, r.customer_phone,
                                       r.customer_email, true) IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM public.registration_notifications AS x
          WHERE x.registration_id = f.registration_id
            AND x.channel = s.channel
            AND x.queue_id > f.queue_id
            AND x.status IN ('queued', 'sending', 'sent', 'delivered')
      )
)
UPDATE public.registration_notifications AS n
SET status          = 'queued',
    skip_reason     = NULL,
    fallback_for    = t.failed_id,
    recipient       = t.recipient,
    held_until      = t.held_until,
    hold_reason     = CASE WHEN t.held_until IS NOT NULL THEN 'quiet_hours' END,
    hold_zone       = CASE WHEN t.held_until IS NOT NULL THEN t.zone END,
    error_code      = NULL,
    error_message   = NULL,
    next_attempt_at = NULL,
    lease_until     = NULL,
    updated_at      = now()
FROM target AS t
WHERE n.id = t.sibling_id
  AND n.status = 'skipped'
  AND n.fallback_for IS NULL
RETURNING n.id, n.channel, n.hold_reason IS NOT NULL AS held;
