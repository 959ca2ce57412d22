-- drops-data: every text customers sent back (inbound_messages), the reply digests e-mailed to staff (reply_digests), and the reply settings of notification_config (staff_email, help_reply, dealership_phone, reply_ack_every and the keyword lists)
-- Undo of 16: no more inbound replies.

-- The prune as 14 left it (11's preview, 14's prune): no 'replies' kind.
CREATE OR REPLACE FUNCTION public.prune_notifications_preview()
RETURNS TABLE (kind text, older_than interval, due bigint, oldest timestamptz)
LANGUAGE plpgsql
STABLE
SET search_path = ''
AS $fn$
DECLARE
    c record;
BEGIN
    SELECT cfg.retain_processed_queue, cfg.retain_webhook_events, cfg.retain_cron_history,
           cfg.retain_deliveries
    INTO c
    FROM public.notification_config AS cfg
    WHERE cfg.id;

    kind := 'processed_queue';
    older_than := c.retain_processed_queue;
    SELECT count(*), min(coalesce(q.processed_at, q.updated_at)) INTO due, oldest
    FROM public.notification_queue AS q
    WHERE older_than IS NOT NULL AND q.sent
      AND coalesce(q.processed_at, q.updated_at) < pg_catalog.now() - older_than;
    RETURN NEXT;

    kind := 'webhook_events';
    older_than := c.retain_webhook_events;
    SELECT count(*), min(w.received_at) INTO due, oldest
    FROM public.webhook_events AS w
    WHERE older_than IS NOT NULL AND w.received_at < pg_catalog.now() - older_than;
    RETURN NEXT;

    kind := 'cron_history';
    older_than := c.retain_cron_history;
    due := 0;
    oldest := NULL;
    IF older_than IS NOT NULL AND pg_catalog.to_regclass('cron.job_run_details') IS NOT NULL THEN
        -- Dynamic: cron.* cannot be named where pg_cron is absent.
        EXECUTE $q$
            SELECT count(*), min(coalesce(d.end_time, d.start_time))
            FROM cron.job_run_details AS d
            WHERE d.jobid IN (SELECT j.jobid FROM cron.job AS j
                              WHERE j.jobname IN ('process-notification-queue',
                                                  'regnotify-prune'))
              AND coalesce(d.end_time, d.start_time) < pg_catalog.now() - $1
        $q$ INTO due, oldest USING older_than;
    END IF;
    RETURN NEXT;

    kind := 'deliveries';
    older_than := c.retain_deliveries;
    SELECT count(*), min(n.created_at) INTO due, oldest
    FROM public.registration_notifications AS n
    WHERE older_than IS NOT NULL
      -- Still moving: never pruned, whatever its age.
      AND n.status NOT IN ('queued', 'sending')
      AND n.created_at < pg_catalog.now() - older_than;
    RETURN NEXT;
END
$fn$;

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

DROP VIEW IF EXISTS public.registration_replies;
DROP TABLE IF EXISTS public.inbound_messages;
DROP TABLE IF EXISTS public.reply_digests;

ALTER TABLE IF EXISTS public.notification_config
    DROP COLUMN IF EXISTS staff_email,
    DROP COLUMN IF EXISTS help_reply,
    DROP COLUMN IF EXISTS dealership_phone,
    DROP COLUMN IF EXISTS reply_ack_every,
    DROP COLUMN IF EXISTS opt_out_keywords,
    DROP COLUMN IF EXISTS opt_in_keywords,
    DROP COLUMN IF EXISTS help_keywords;
