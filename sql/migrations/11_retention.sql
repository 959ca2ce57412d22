-- 11 Retention: what the pipeline leaves behind is pruned after configurable
-- ages, as Oban's Pruner does for its jobs table.
--
-- Three things used to grow without bound: processed notification_queue
-- rows, webhook_events, and pg_cron's run log (cron.job_run_details: the
-- tick job alone adds 1,440 rows a day and pg_cron never cleans it).
-- registration_notifications is the delivery history and stays unless an
-- age is configured for it too.
--
-- public.prune_notifications(batch_size) deletes at most batch_size rows of
-- each kind and returns how many went: one short transaction, so it is
-- called again and again, committing in between (the CLI and the relay), or
-- every few minutes from pg_cron. It is a function, not a procedure that
-- commits between batches, because PostgreSQL refuses COMMIT inside a
-- procedure that pins its search_path, and every routine here pins it.
-- Deleted rows are old and closed, and nothing else locks them: the trigger's
-- upsert only touches the pending row (sent = false), and registrations are
-- never locked by deleting rows that reference them.

-- 1 ─ The ages ───────────────────────────────────────────────────────────────

-- In the database rather than in the environment, so pg_cron, the relay and
-- `regnotify prune` all agree. NULL means "keep forever".
ALTER TABLE public.notification_config
    ADD COLUMN IF NOT EXISTS retain_processed_queue interval DEFAULT interval '30 days',
    ADD COLUMN IF NOT EXISTS retain_webhook_events  interval DEFAULT interval '14 days',
    ADD COLUMN IF NOT EXISTS retain_cron_history    interval DEFAULT interval '7 days',
    ADD COLUMN IF NOT EXISTS retain_deliveries      interval;

DO $ages$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'notification_config_retention_positive') THEN
        -- A zero or negative age would delete what is still being worked on.
        ALTER TABLE public.notification_config
            ADD CONSTRAINT notification_config_retention_positive CHECK (
                coalesce(retain_processed_queue, interval '1 day') >= interval '1 hour'
                AND coalesce(retain_webhook_events, interval '1 day') >= interval '1 hour'
                AND coalesce(retain_cron_history, interval '1 day') >= interval '1 hour'
                AND coalesce(retain_deliveries, interval '1 day') >= interval '1 day');
    END IF;
END
$ages$;

-- Webhook rows are found by age; the table is insert-only, so the index is
-- cheap. The queue gets no new index: the claim writes it on every row, and
-- the prune walks its primary key instead (old rows have the low ids).
CREATE INDEX IF NOT EXISTS ix_webhook_events_received_at
    ON public.webhook_events (received_at);

-- 2 ─ What would go ──────────────────────────────────────────────────────────

-- One row per kind: its age (NULL: kept forever), how many rows are older,
-- and the oldest of them. For `regnotify prune --dry-run`.
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

-- 3 ─ One batch of each ──────────────────────────────────────────────────────

-- SKIP LOCKED: two prunes at once (pg_cron and a person running
-- `regnotify prune`) share the work instead of waiting on each other.
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

-- Only the owner (the migrations' role, which is also the role pg_cron runs
-- our jobs as) prunes. SECURITY INVOKER is enough: the owner bypasses RLS on
-- its tables, and pg_cron lets a role delete its own jobs' runs.
REVOKE ALL ON FUNCTION public.prune_notifications(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.prune_notifications_preview() FROM PUBLIC;
DO $grants$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON FUNCTION public.prune_notifications(integer) FROM %I', r);
            EXECUTE format('REVOKE ALL ON FUNCTION public.prune_notifications_preview() FROM %I', r);
        END IF;
    END LOOP;
END
$grants$;

-- 4 ─ Schedule ───────────────────────────────────────────────────────────────

-- Every five minutes, one batch of each kind (at most 5,000 rows each): a
-- backlog drains at 1.4 million rows a day without one long transaction,
-- and the usual run finds nothing and costs a few index probes. 04 enabled
-- pg_cron where it could; this only adds the job where pg_cron is on.
-- (cron.database_name is not read here: it is a superuser-only setting, and
-- reading it as a plain owner raises even with missing_ok.)
DO $cron$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        BEGIN
            -- A known name updates the job in place (pg_cron >= 1.3).
            PERFORM cron.schedule('regnotify-prune', '*/5 * * * *',
                                  'SELECT kind, deleted FROM public.prune_notifications(5000)');
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'regnotify: could not schedule the prune job in pg_cron (%): '
                         'the relay prunes hourly instead, or run regnotify prune', SQLERRM;
        END;
    ELSE
        RAISE NOTICE 'regnotify: pg_cron is off: no prune job; the relay prunes hourly '
                     '(or run regnotify prune yourself)';
    END IF;
END
$cron$;
