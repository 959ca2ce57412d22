-- drops-data: when each e-mail batch's Idempotency-Key first went to Resend (registration_notifications.email_batch_keyed_at)
-- Undo of 14.

DROP INDEX IF EXISTS public.ix_notification_queue_processed;
DROP INDEX IF EXISTS public.ix_registration_notifications_outcome_unknown;

-- 11's prune, walking the queue in id order.
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
    -- never read, locked or deleted here, whatever its age.
    kind := 'processed_queue';
    deleted := 0;
    IF c.retain_processed_queue IS NOT NULL THEN
        DELETE FROM public.notification_queue AS q
        WHERE q.id = ANY(ARRAY(
            SELECT o.id FROM public.notification_queue AS o
            WHERE o.sent
              AND coalesce(o.processed_at, o.updated_at)
                  < pg_catalog.now() - c.retain_processed_queue
            ORDER BY o.id
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

-- Only what regnotify added: a column the dealership's own table already had (adopted) stays, with its values.
DO $undo$
DECLARE
    v_col     text;
    v_adopted boolean;
BEGIN
    FOREACH v_col IN ARRAY ARRAY['email_batch_keyed_at'] LOOP
        v_adopted := false;
        IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
            EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted
                USING 'col|public.registration_notifications.' || v_col;
        END IF;
        IF NOT v_adopted THEN
            EXECUTE pg_catalog.format('ALTER TABLE IF EXISTS public.registration_notifications DROP COLUMN IF EXISTS %I',
                                      v_col);
        END IF;
    END LOOP;
END
$undo$;
