-- What the relay writes and reads: provider status webhooks, SMS opt-outs and
-- opt-ins from inbound texts, webhook deduplication, and whether pg_cron
-- already ticks for us.
--
-- A delivery only ever moves forward. Ranks: queued 0 < sending 1 < sent 2 <
-- delivered 3 < a final failure (undelivered, failed, bounced, complained).
-- A row already final (those four, or skipped) is never changed again: the
-- guard sits in the UPDATE's own WHERE, so PostgreSQL re-checks it against the
-- newest row version when two callbacks race.

-- name: webhook_apply_status
-- One provider status for the delivery with this provider id and channel.
-- Rows: none when the id is unknown; otherwise one per matching delivery with
-- the status it had and, when this callback moved it, the status it has now.
WITH found AS (
    SELECT id, status
    FROM public.registration_notifications
    WHERE provider_message_id = %(provider_message_id)s::text
      AND channel = %(channel)s::text
),
moved AS (
    UPDATE public.registration_notifications AS n
    SET status        = %(status)s::text,
        error_code    = CASE WHEN %(status)s::text IN ('undelivered', 'failed', 'bounced',
                                                        'complained')
                             THEN %(error_code)s::text ELSE n.error_code END,
        error_message = CASE WHEN %(status)s::text IN ('undelivered', 'failed', 'bounced',
                                                        'complained')
                             THEN %(error_message)s::text ELSE n.error_message END,
        delivered_at  = CASE WHEN %(status)s::text = 'delivered'
                             THEN coalesce(n.delivered_at, %(occurred_at)s::timestamptz, now())
                             ELSE n.delivered_at END,
        updated_at    = now()
    FROM found AS f
    WHERE n.id = f.id
      AND n.status NOT IN ('undelivered', 'failed', 'bounced', 'complained', 'skipped')
      -- array_position counts from 1; anything not in the list is a final failure (5).
      AND coalesce(array_position(ARRAY['queued', 'sending', 'sent', 'delivered'],
                                  %(status)s::text), 5)
        > coalesce(array_position(ARRAY['queued', 'sending', 'sent', 'delivered'],
                                  n.status), 5)
    RETURNING n.id, n.status
)
SELECT f.id, f.status AS previous_status, m.status AS new_status
FROM found AS f
LEFT JOIN moved AS m ON m.id = f.id
ORDER BY f.id;

-- name: webhook_note_delay
-- A delay report (Resend's email.delivery_delayed) changes no status; it is
-- kept in error_message while the delivery is still on its way, and ignored
-- once it has arrived or failed. Same rows back as webhook_apply_status.
WITH found AS (
    SELECT id, status
    FROM public.registration_notifications
    WHERE provider_message_id = %(provider_message_id)s::text
      AND channel = %(channel)s::text
),
noted AS (
    UPDATE public.registration_notifications AS n
    SET error_message = %(error_message)s::text,
        updated_at    = now()
    FROM found AS f
    WHERE n.id = f.id
      AND n.status IN ('queued', 'sending', 'sent')
    RETURNING n.id, n.status
)
SELECT f.id, f.status AS previous_status, m.status AS new_status
FROM found AS f
LEFT JOIN noted AS m ON m.id = f.id
ORDER BY f.id;

-- name: webhook_event_first_seen
-- Records a provider's event id; no row back means it was applied before.
-- Run in the transaction that applies the event, so a failed apply forgets it
-- and the provider's retry is applied for real.
INSERT INTO public.webhook_events (provider, event_id)
VALUES (%(provider)s, %(event_id)s)
ON CONFLICT (provider, event_id) DO NOTHING
RETURNING true AS first_seen;

-- name: relay_cron_extension_present
-- Whether pg_cron's job table is visible here; cron.job cannot be named in a
-- statement where it does not exist, hence the two steps.
SELECT pg_catalog.to_regclass('cron.job') IS NOT NULL AS present;

-- name: relay_cron_job_active
SELECT EXISTS (
    SELECT 1 FROM cron.job WHERE jobname = %(jobname)s AND active
) AS scheduled;
