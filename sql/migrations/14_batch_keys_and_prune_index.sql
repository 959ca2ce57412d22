-- 14 The processed-queue prune reads an index, not the table; failed
-- deliveries whose outcome is unknown are counted from an index of their own;
-- an e-mail batch records when its Idempotency-Key first went to Resend.
--
-- Migration 11's prune found processed queue rows by
-- coalesce(processed_at, updated_at), which no index served, in id order: a
-- run that found nothing to delete still read every processed row kept for
-- the retention age (30 days of them), every five minutes. A partial index on
-- that very expression, over closed rows only, lets the step read the oldest
-- entries and stop: nothing due costs one index probe. The claim already
-- writes every row it closes into the indexes on notification_queue; this is
-- one more entry per closed row, never touched again until the prune.
-- Safe to run twice; runs as the database owner, no superuser.

CREATE INDEX IF NOT EXISTS ix_notification_queue_processed
    ON public.notification_queue ((coalesce(processed_at, updated_at)))
    WHERE sent;

-- The same function as migration 11's, but for the processed-queue step,
-- which now walks ix_notification_queue_processed oldest first. CREATE OR
-- REPLACE keeps migration 12's grants (owner only).
CREATE OR REPLACE FUNCTION public.prune_notifications(batch_size integer DEFAULT 5000)
RETURNS TABLE (kind text, deleted bigint)
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
DECLARE
    c record;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 OR batch_size > 100000 THEN
        RAISE EXCEPTION 'prune_notifications: batch_size must be 1..100000, not %', batch_size
            USING ERRCODE = '22023';
    END IF;
    SELECT cfg.retain_processed_queue, cfg.retain_webhook_events, cfg.retain_cron_history,
           cfg.retain_deliveries
    INTO c
    FROM public.notification_config AS cfg
    WHERE cfg.id;

    -- Only closed rows (sent = true): the pending row the trigger upserts is
    -- never read, locked or deleted here, whatever its age. The ORDER BY is
    -- the index's expression, so the scan stops at the first young row.
    kind := 'processed_queue';
    deleted := 0;
    IF c.retain_processed_queue IS NOT NULL THEN
        DELETE FROM public.notification_queue AS q
        WHERE q.id = ANY(ARRAY(
            SELECT o.id FROM public.notification_queue AS o
            WHERE o.sent
              AND coalesce(o.processed_at, o.updated_at)
                  < pg_catalog.now() - c.retain_processed_queue
            ORDER BY coalesce(o.processed_at, o.updated_at)
            LIMIT batch_size
            FOR UPDATE SKIP LOCKED));
        GET DIAGNOSTICS deleted = ROW_COUNT;
    END IF;
    RETURN NEXT;

    kind := 'webhook_events';
    deleted := 0;
    IF c.retain_webhook_events IS NOT NULL THEN
        DELETE FROM public.webhook_events AS w
        WHERE w.ctid = ANY(ARRAY(
            SELECT o.ctid FROM public.webhook_events AS o
            WHERE o.received_at < pg_catalog.now() - c.retain_webhook_events
            ORDER BY o.received_at
            LIMIT batch_size
            FOR UPDATE SKIP LOCKED));
        GET DIAGNOSTICS deleted = ROW_COUNT;
    END IF;
    RETURN NEXT;

    -- Only our jobs' runs: other jobs in cron.job_run_details belong to
    -- someone else, who decides how long to keep them.
    kind := 'cron_history';
    deleted := 0;
    IF c.retain_cron_history IS NOT NULL
       AND pg_catalog.to_regclass('cron.job_run_details') IS NOT NULL THEN
        EXECUTE $q$
            WITH gone AS (
                DELETE FROM cron.job_run_details AS d
                WHERE d.runid = ANY(ARRAY(
                    SELECT o.runid FROM cron.job_run_details AS o
                    WHERE o.jobid IN (SELECT j.jobid FROM cron.job AS j
                                      WHERE j.jobname IN ('process-notification-queue',
                                                          'regnotify-prune'))
                      AND coalesce(o.end_time, o.start_time) < pg_catalog.now() - $1
                    ORDER BY o.runid
                    LIMIT $2))
                RETURNING 1)
            SELECT count(*) FROM gone
        $q$ INTO deleted USING c.retain_cron_history, batch_size;
    END IF;
    RETURN NEXT;

    -- The history, only when an age is configured for it; a delivery still
    -- moving (queued, sending) stays whatever its age.
    kind := 'deliveries';
    deleted := 0;
    IF c.retain_deliveries IS NOT NULL THEN
        DELETE FROM public.registration_notifications AS n
        WHERE n.id = ANY(ARRAY(
            SELECT o.id FROM public.registration_notifications AS o
            WHERE o.status NOT IN ('queued', 'sending')
              AND o.created_at < pg_catalog.now() - c.retain_deliveries
            ORDER BY o.id
            LIMIT batch_size
            FOR UPDATE SKIP LOCKED));
        GET DIAGNOSTICS deleted = ROW_COUNT;
    END IF;
    RETURN NEXT;
END
$fn$;

-- Failed deliveries whose last attempt may have been accepted (a lost answer
-- that no key Resend recognises can settle): /metrics counts them on every
-- scrape, and there are few, so a small partial index keeps that count cheap.
CREATE INDEX IF NOT EXISTS ix_registration_notifications_outcome_unknown
    ON public.registration_notifications (channel)
    WHERE status = 'failed' AND outcome_unknown;

-- When an e-mail batch's Idempotency-Key first went to Resend. Resend
-- forgets keys after 24 hours: a batch whose earlier attempt may have been
-- accepted is resent under its key only while Resend still recognises it.
ALTER TABLE public.registration_notifications
    ADD COLUMN IF NOT EXISTS email_batch_keyed_at timestamptz;
