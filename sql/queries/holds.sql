-- Quiet hours (migration 10): deliveries the claim held until the customer's
-- quiet window opens.

-- name: release_held_due
-- Up to %(limit)s held deliveries whose window has opened, soonest first:
-- the hold is lifted (held_until and hold_zone stay, as history) and the
-- caller dispatches them. SKIP LOCKED, so two queue runs share the work, and
-- the guard re-checked under the lock loses a race with a supersession.
UPDATE public.registration_notifications AS n
SET hold_reason = NULL,
    updated_at  = now()
WHERE n.id = ANY(ARRAY(
    SELECT h.id
    FROM public.registration_notifications AS h
    WHERE h.hold_reason IS NOT NULL
      AND h.held_until <= now()
    ORDER BY h.held_until, h.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
  AND n.hold_reason IS NOT NULL
  AND n.status = 'queued'
RETURNING n.id, n.channel;

-- name: held_count
-- Deliveries held for quiet hours right now, by channel, with the soonest release.
SELECT channel, count(*) AS held,
       extract(epoch FROM min(held_until) - now())::float8 AS next_release_in_s
FROM public.registration_notifications
WHERE hold_reason IS NOT NULL
GROUP BY channel
ORDER BY channel;

-- name: quiet_hours_release_at
-- The SQL function itself, for tests and for staff checking a zone.
SELECT public.quiet_hours_release_at(%(at)s::timestamptz, %(zone)s::text,
                                     %(start)s::time, %(end)s::time) AS release_at;
