-- Retention (migration 11): one batch of each kind, what would go, the ages,
-- and whether pg_cron already runs the prune.

-- name: prune_batch
-- Deletes at most %(batch_size)s rows of each kind; one row per kind with how
-- many went. Call it again, committing in between, until every count is 0.
SELECT kind, deleted FROM public.prune_notifications(%(batch_size)s::integer);

-- name: prune_preview
SELECT kind, older_than, due, oldest FROM public.prune_notifications_preview();

-- name: prune_cron_job_active
-- Only where cron.job exists (see relay_cron_extension_present).
SELECT EXISTS (
    SELECT 1 FROM cron.job WHERE jobname = 'regnotify-prune' AND active
) AS scheduled;
