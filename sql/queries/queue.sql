-- The debounce queue: claiming due rows and turning them into deliveries.

-- name: claim_due
-- One statement claims up to %(batch)s due rows (skipping rows another
-- claimer holds), closes them with their reason, and writes one delivery row
-- per channel: `queued`, or `skipped` with the first reason that applies.
-- A `queued` delivery that falls inside the customer's quiet hours is held
-- (hold_reason, held_until) and not returned: release_held_due sends it.
-- `id = ANY(ARRAY(...))` keeps the plan on ix_notification_queue_due; `IN`
-- over the locked subquery turned into a hash join that scanned the table.
-- Returns one row: the number of queue rows closed, and the ids of the
-- deliveries that must be sent, per channel (arrays: a row per delivery cost
-- the claimer more to read than the database took to write them).
-- The INSERT has no ON CONFLICT: a queue row is locked and closed by this
-- same statement and nothing reopens it, so it can never be claimed twice.
-- Should that ever break, uq_registration_notifications_queue_channel fails
-- the whole claim (nothing closed, nothing lost) instead of hiding it, and
-- the speculative insertion ON CONFLICT needs cost a fifth of the claim.
WITH closed AS (
    UPDATE public.notification_queue AS q
    SET sent          = true,
        processed_at  = now(),
        updated_at    = now(),
        closed_reason = CASE
            WHEN q.old_stage IS NULL THEN 'manual'
            WHEN q.old_stage = q.new_stage THEN 'no_net_change'
            WHEN NOT q.notify_customer THEN 'silenced'
            ELSE 'processed'
        END
    WHERE q.id = ANY(ARRAY(
        SELECT d.id
        FROM public.notification_queue AS d
        WHERE d.sent = false AND d.send_after <= now()
        ORDER BY d.send_after
        LIMIT %(batch)s
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING q.id, q.registration_id, q.old_stage, q.new_stage, q.notify_customer,
              q.bypass_quiet_hours
),
-- Quiet hours (migration 10). A LEFT JOIN: without the config row nothing is held.
cfg AS (
    SELECT c.quiet_hours_start, c.quiet_hours_end, c.quiet_hours_channels, c.default_time_zone
    FROM (SELECT true AS one) AS x
    LEFT JOIN public.notification_config AS c ON c.id
),
decided AS (
    SELECT c.id AS queue_id,
           c.registration_id,
           c.old_stage,
           c.new_stage,
           ch.channel,
           CASE ch.channel WHEN 'sms' THEN r.customer_phone ELSE r.customer_email END
               AS recipient,
           -- The one consent rule (migration 27), with the burst's own inputs.
           public.regnotify_skip_reason(ch.channel, r.notification_pref, r.customer_phone,
                                        r.customer_email, false, c.notify_customer,
                                        c.old_stage, c.new_stage) AS skip_reason,
           -- Only for rows that will be sent on a quiet channel: the call is
           -- not inlined (it pins search_path), so the rest skip it.
           CASE WHEN ch.channel = ANY(cfg.quiet_hours_channels) AND NOT c.bypass_quiet_hours
                THEN coalesce(r.time_zone, cfg.default_time_zone) END AS quiet_zone,
           cfg.quiet_hours_start,
           cfg.quiet_hours_end
    FROM closed AS c
    JOIN public.registrations AS r ON r.id = c.registration_id
    CROSS JOIN (VALUES ('sms'), ('email')) AS ch (channel)
    CROSS JOIN cfg
),
held AS (
    SELECT d.*,
           CASE WHEN d.skip_reason IS NULL AND d.quiet_zone IS NOT NULL
                THEN public.quiet_hours_release_now(d.quiet_zone,
                                                    d.quiet_hours_start, d.quiet_hours_end)
           END AS held_until
    FROM decided AS d
),
written AS (
    INSERT INTO public.registration_notifications
        (registration_id, queue_id, channel, recipient, status, skip_reason,
         old_stage, new_stage, held_until, hold_reason, hold_zone)
    SELECT registration_id, queue_id, channel, recipient,
           CASE WHEN skip_reason IS NULL THEN 'queued' ELSE 'skipped' END,
           skip_reason, old_stage, new_stage, held_until,
           CASE WHEN held_until IS NOT NULL THEN 'quiet_hours' END,
           CASE WHEN held_until IS NOT NULL THEN quiet_zone END
    FROM held
    RETURNING id, channel, status, hold_reason
),
-- One text per morning: a message still held for quiet hours gives way to
-- the newer burst's message on the same channel (held or not). The UPDATE
-- reads the statement's snapshot, so it never sees the rows written above.
superseded AS (
    UPDATE public.registration_notifications AS h
    SET status      = 'skipped',
        skip_reason = 'superseded',
        hold_reason = NULL,
        updated_at  = now()
    FROM (SELECT DISTINCT registration_id, channel FROM decided
          WHERE skip_reason IS NULL) AS newer
    WHERE h.registration_id = newer.registration_id
      AND h.channel = newer.channel
      AND h.status = 'queued'
      AND h.hold_reason IS NOT NULL
    RETURNING h.id
)
SELECT (SELECT count(*) FROM closed) AS closed,
       coalesce(array_agg(id) FILTER (WHERE channel = 'sms'), '{}') AS sms_ids,
       coalesce(array_agg(id) FILTER (WHERE channel = 'email'), '{}') AS email_ids,
       (SELECT count(*) FROM written AS w WHERE w.hold_reason IS NOT NULL) AS held,
       (SELECT count(*) FROM superseded) AS superseded
FROM written
WHERE status = 'queued' AND hold_reason IS NULL;

-- name: next_send_after
-- The earliest pending send_after, for the wake-up; NULL when nothing waits.
SELECT min(send_after) AS send_after
FROM public.notification_queue
WHERE sent = false;

-- name: queue_due_count
SELECT count(*) AS due
FROM public.notification_queue
WHERE sent = false AND send_after <= now();

-- name: seconds_until_next_due
-- Measured on the database's clock, the one send_after was written with.
-- The next quiet-hours release counts too (least() ignores a NULL).
SELECT extract(epoch FROM least(
           (SELECT min(send_after) FROM public.notification_queue WHERE sent = false),
           (SELECT min(held_until) FROM public.registration_notifications
            WHERE hold_reason IS NOT NULL)
       ) - now())::float8 AS seconds;

-- name: next_pending_send_after
-- The relay's due watch (tasks/relay/due_watch.py), every second: one probe
-- of ix_notification_queue_due. A new earliest time means a burst opened
-- that no queue run has seen, so no wake-up is armed for it yet.
SELECT min(send_after) AS send_after FROM public.notification_queue WHERE sent = false;
