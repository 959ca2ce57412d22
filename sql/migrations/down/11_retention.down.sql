-- drops-data: the retention ages in notification_config (retain_processed_queue, retain_webhook_events, retain_cron_history, retain_deliveries)
-- Undo of 11: nothing is pruned any more; nothing that was kept is touched.

DO $cron$
BEGIN
    IF pg_catalog.to_regclass('cron.job') IS NOT NULL THEN
        PERFORM cron.unschedule(j.jobid) FROM cron.job j
        WHERE j.jobname = 'regnotify-prune' AND j.username = current_user;
    END IF;
END
$cron$;

DROP FUNCTION IF EXISTS public.prune_notifications(integer);
DROP FUNCTION IF EXISTS public.prune_notifications_preview();
DROP INDEX IF EXISTS public.ix_webhook_events_received_at;

ALTER TABLE IF EXISTS public.notification_config
    DROP CONSTRAINT IF EXISTS notification_config_retention_positive,
    DROP COLUMN IF EXISTS retain_processed_queue,
    DROP COLUMN IF EXISTS retain_webhook_events,
    DROP COLUMN IF EXISTS retain_cron_history,
    DROP COLUMN IF EXISTS retain_deliveries;
