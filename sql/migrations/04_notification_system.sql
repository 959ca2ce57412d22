-- 04 The notification system, in the seed's seven sections:
--   1 notification_queue (+ its configuration)   5 queue_status_notification() trigger
--   2 audit extensions                           6 row-level security
--   3 notification_pref                          7 notification_tick() and the pg_cron job
--   4 pending_notify_customer
-- Every statement is safe to run twice, and the file runs as-is under
-- `psql -f`, `regnotify migrate` and the Supabase CLI.

-- 1 ─ Queue ─────────────────────────────────────────────────────────────────

-- One row: the debounce settings live in a table rather than in
-- `ALTER DATABASE ... SET`, which Supabase may refuse. Typed columns with
-- CHECKs, because a bad value here would break every stage update.
CREATE TABLE IF NOT EXISTS public.notification_config (
    id              boolean PRIMARY KEY DEFAULT true CHECK (id),
    debounce_window interval NOT NULL DEFAULT interval '5 minutes'
                    CHECK (debounce_window >= interval '0'),
    max_wait        interval NOT NULL DEFAULT interval '30 minutes',
    relay_url       text CHECK (relay_url IS NULL OR relay_url ~ '^https?://'),
    -- Fallback for databases without Supabase Vault (secret 'regnotify_relay_token').
    relay_token     text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_config_max_wait_covers_window CHECK (max_wait >= debounce_window)
);
INSERT INTO public.notification_config (id) VALUES (true) ON CONFLICT (id) DO NOTHING;

CREATE TABLE IF NOT EXISTS public.notification_queue (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registration_id uuid NOT NULL REFERENCES public.registrations (id) ON DELETE CASCADE,
    old_stage       text,
    new_stage       text NOT NULL,
    send_after      timestamptz NOT NULL,
    sent            boolean NOT NULL DEFAULT false,
    notify_customer boolean NOT NULL DEFAULT true,
    -- How many stage changes this row merged, for the timeline.
    change_count    int NOT NULL DEFAULT 1,
    closed_reason   text CHECK (closed_reason IN ('processed', 'no_net_change', 'silenced', 'manual')),
    processed_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX IF NOT EXISTS uq_pending_notification
    ON public.notification_queue (registration_id) WHERE (sent = false);

-- The claim reads "pending, oldest send_after first, up to now": a partial
-- index ordered by send_after serves it without touching closed rows.
CREATE INDEX IF NOT EXISTS ix_notification_queue_due
    ON public.notification_queue (send_after) WHERE (sent = false);

CREATE INDEX IF NOT EXISTS ix_notification_queue_registration
    ON public.notification_queue (registration_id, created_at);

-- 2 ─ Audit extensions ───────────────────────────────────────────────────────

ALTER TABLE public.registration_notifications
    ADD COLUMN IF NOT EXISTS queue_id bigint
        REFERENCES public.notification_queue (id) ON DELETE CASCADE,
    ADD COLUMN IF NOT EXISTS old_stage text,
    ADD COLUMN IF NOT EXISTS new_stage text,
    ADD COLUMN IF NOT EXISTS subject text,
    ADD COLUMN IF NOT EXISTS template_used text,
    ADD COLUMN IF NOT EXISTS provider_message_id text,
    ADD COLUMN IF NOT EXISTS provider text,
    ADD COLUMN IF NOT EXISTS body text,
    ADD COLUMN IF NOT EXISTS skip_reason text,
    -- True from just before a provider call until its outcome is known: a
    -- retry that finds it set cannot tell whether the provider accepted.
    ADD COLUMN IF NOT EXISTS outcome_unknown boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS last_attempt_at timestamptz,
    -- When a retry is due, so `status` can say what a delivery is waiting for.
    ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz,
    -- A worker owns a delivery until then; a redelivered or swept copy of
    -- its task leaves it alone, and a killed worker's claim simply expires.
    ADD COLUMN IF NOT EXISTS lease_until timestamptz;

DO $audit$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'registration_notifications_skip_reason_check') THEN
        ALTER TABLE public.registration_notifications
            ADD CONSTRAINT registration_notifications_skip_reason_check
            CHECK (skip_reason IN ('preference', 'silenced', 'no_contact', 'opted_out',
                                   'no_net_change'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'uq_registration_notifications_queue_channel') THEN
        ALTER TABLE public.registration_notifications
            ADD CONSTRAINT uq_registration_notifications_queue_channel
            UNIQUE (queue_id, channel);
    END IF;
END
$audit$;

-- Webhooks find deliveries by the provider's id.
CREATE INDEX IF NOT EXISTS ix_registration_notifications_provider_message_id
    ON public.registration_notifications (provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- The sweep looks only at deliveries still moving.
CREATE INDEX IF NOT EXISTS ix_registration_notifications_in_flight
    ON public.registration_notifications (updated_at)
    WHERE status IN ('queued', 'sending');

-- 3 ─ notification_pref ──────────────────────────────────────────────────────

ALTER TABLE public.registrations
    ADD COLUMN IF NOT EXISTS notification_pref text NOT NULL DEFAULT 'both';

DO $pref$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'registrations_notification_pref_check') THEN
        ALTER TABLE public.registrations
            ADD CONSTRAINT registrations_notification_pref_check
            CHECK (notification_pref IN ('sms', 'email', 'both', 'none'));
    END IF;
END
$pref$;

-- 4 ─ pending_notify_customer ────────────────────────────────────────────────

-- Staff set it to false in the same UPDATE as a stage change to silence that
-- change; the trigger consumes it. NULL means "the default" (notify).
ALTER TABLE public.registrations
    ADD COLUMN IF NOT EXISTS pending_notify_customer boolean;

-- 5 ─ Trigger ───────────────────────────────────────────────────────────────

CREATE OR REPLACE FUNCTION public.queue_status_notification()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
-- Empty: every name below is schema-qualified, so a caller's search_path
-- cannot redirect this definer-rights function to objects of their own.
SET search_path = ''
AS $fn$
DECLARE
    v_window interval;
    v_max    interval;
BEGIN
    SELECT c.debounce_window, c.max_wait INTO v_window, v_max
    FROM public.notification_config c
    WHERE c.id;
    v_window := coalesce(v_window, interval '5 minutes');
    v_max := coalesce(v_max, interval '30 minutes');

    INSERT INTO public.notification_queue AS q
        (registration_id, old_stage, new_stage, send_after, notify_customer)
    VALUES
        (NEW.id, OLD.current_stage, NEW.current_stage, now() + v_window,
         coalesce(NEW.pending_notify_customer, true))
    ON CONFLICT (registration_id) WHERE (sent = false) DO UPDATE
    SET new_stage       = EXCLUDED.new_stage,
        -- The burst's first change started the clock: keep changing and the
        -- message still leaves by created_at + max_wait.
        send_after      = least(now() + v_window, q.created_at + v_max),
        notify_customer = EXCLUDED.notify_customer,
        change_count    = q.change_count + 1,
        updated_at      = now();

    NEW.pending_notify_customer := NULL;
    NEW.updated_at := now();
    RETURN NEW;
END
$fn$;

DROP TRIGGER IF EXISTS trg_queue_status_notification ON public.registrations;
CREATE TRIGGER trg_queue_status_notification
    BEFORE UPDATE OF current_stage ON public.registrations
    FOR EACH ROW
    WHEN (OLD.current_stage IS DISTINCT FROM NEW.current_stage)
    EXECUTE FUNCTION public.queue_status_notification();

-- 6 ─ Row-level security ─────────────────────────────────────────────────────

-- Supabase gives the phone claim as E.164 without the '+'.
CREATE OR REPLACE FUNCTION public.jwt_customer_phone()
RETURNS text
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT '+' || ltrim(nullif(auth.jwt() ->> 'phone', ''), '+')
$fn$;

CREATE OR REPLACE FUNCTION public.jwt_is_admin()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT coalesce(auth.jwt() -> 'app_metadata' ->> 'role', '') = 'admin'
$fn$;

ALTER TABLE public.registrations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.registration_notifications ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notification_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notification_config ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.registration_stages ENABLE ROW LEVEL SECURITY;

-- Grants are wide on purpose: the policies, not a missing grant, decide.
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON public.registrations, public.registration_notifications, public.notification_queue
    TO anon, authenticated, service_role;
GRANT SELECT ON public.registration_stages TO anon, authenticated, service_role;
GRANT USAGE ON SEQUENCE public.notification_queue_id_seq TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.jwt_customer_phone(), public.jwt_is_admin()
    TO anon, authenticated, service_role;
-- The relay token fallback lives here: nobody but the owner reads it.
REVOKE ALL ON public.notification_config FROM anon, authenticated;
GRANT SELECT, UPDATE ON public.notification_config TO service_role;

DROP POLICY IF EXISTS customer_reads_own_registrations ON public.registrations;
CREATE POLICY customer_reads_own_registrations ON public.registrations
    FOR SELECT TO authenticated
    USING (customer_phone = public.jwt_customer_phone());

DROP POLICY IF EXISTS admin_manages_registrations ON public.registrations;
CREATE POLICY admin_manages_registrations ON public.registrations
    FOR ALL TO authenticated
    USING (public.jwt_is_admin()) WITH CHECK (public.jwt_is_admin());

DROP POLICY IF EXISTS customer_reads_own_notifications ON public.registration_notifications;
CREATE POLICY customer_reads_own_notifications ON public.registration_notifications
    FOR SELECT TO authenticated
    USING (registration_id IN (
        SELECT r.id FROM public.registrations r
        WHERE r.customer_phone = public.jwt_customer_phone()));

DROP POLICY IF EXISTS admin_reads_notifications ON public.registration_notifications;
CREATE POLICY admin_reads_notifications ON public.registration_notifications
    FOR SELECT TO authenticated
    USING (public.jwt_is_admin());

DROP POLICY IF EXISTS admin_manages_queue ON public.notification_queue;
CREATE POLICY admin_manages_queue ON public.notification_queue
    FOR ALL TO authenticated
    USING (public.jwt_is_admin()) WITH CHECK (public.jwt_is_admin());

DROP POLICY IF EXISTS everyone_reads_stages ON public.registration_stages;
CREATE POLICY everyone_reads_stages ON public.registration_stages
    FOR SELECT TO anon, authenticated, service_role
    USING (true);

-- service_role bypasses RLS on Supabase; where it could not be given
-- BYPASSRLS (01), these keep it working the same way.
DROP POLICY IF EXISTS service_role_all ON public.registrations;
CREATE POLICY service_role_all ON public.registrations
    FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS service_role_all ON public.registration_notifications;
CREATE POLICY service_role_all ON public.registration_notifications
    FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS service_role_all ON public.notification_queue;
CREATE POLICY service_role_all ON public.notification_queue
    FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS service_role_all ON public.notification_config;
CREATE POLICY service_role_all ON public.notification_config
    FOR ALL TO service_role USING (true) WITH CHECK (true);

-- 7 ─ Tick and schedule ─────────────────────────────────────────────────────

DO $ext$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_net') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS pg_net;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'regnotify: pg_net is available but could not be enabled (%): ticks use NOTIFY', SQLERRM;
        END;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_net') THEN
        RAISE NOTICE 'regnotify: pg_net is off: notification_tick() wakes the relay with NOTIFY';
    END IF;
END
$ext$;

-- Returns how it woke the relay, for people running it by hand.
CREATE OR REPLACE FUNCTION public.notification_tick()
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $fn$
DECLARE
    v_url     text;
    v_token   text;
    v_vault   text;
    v_request bigint;
BEGIN
    SELECT c.relay_url, c.relay_token INTO v_url, v_token
    FROM public.notification_config c
    WHERE c.id;

    IF coalesce(v_url, '') <> '' AND EXISTS (
        SELECT 1 FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'net' AND p.proname = 'http_post'
    ) THEN
        IF pg_catalog.to_regclass('vault.decrypted_secrets') IS NOT NULL THEN
            EXECUTE 'SELECT decrypted_secret FROM vault.decrypted_secrets
                     WHERE name = $1 LIMIT 1'
                INTO v_vault USING 'regnotify_relay_token';
            v_token := coalesce(v_vault, v_token);
        END IF;
        -- Dynamic so the function compiles where pg_net is absent.
        EXECUTE 'SELECT net.http_post(url := $1, body := $2, headers := $3,
                                      timeout_milliseconds := 5000)'
            INTO v_request
            USING pg_catalog.rtrim(v_url, '/') || '/tick',
                  pg_catalog.jsonb_build_object('source', 'pg_cron', 'at', pg_catalog.now()),
                  pg_catalog.jsonb_build_object(
                      'Content-Type', 'application/json',
                      'Authorization', 'Bearer ' || coalesce(v_token, ''));
        RETURN 'http_post:' || v_request;
    END IF;

    PERFORM pg_catalog.pg_notify(
        'notification_tick',
        pg_catalog.json_build_object('source', 'notification_tick', 'at', pg_catalog.now())::text);
    RETURN 'notify';
END
$fn$;

REVOKE ALL ON FUNCTION public.notification_tick() FROM PUBLIC;
REVOKE ALL ON FUNCTION public.queue_status_notification() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.notification_tick() TO service_role;

DO $cron$
DECLARE
    v_cron_db text := current_setting('cron.database_name', true);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')
       AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron') THEN
        BEGIN
            CREATE EXTENSION pg_cron;
        EXCEPTION WHEN OTHERS THEN
            -- Typical causes: not in shared_preload_libraries, or this is not
            -- the one database pg_cron serves (cron.database_name).
            RAISE NOTICE 'regnotify: pg_cron could not be enabled here (%; cron.database_name = %)',
                SQLERRM, coalesce(v_cron_db, 'unset');
        END;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        -- cron.schedule() with a known name updates the job in place (pg_cron >= 1.3).
        PERFORM cron.schedule('process-notification-queue', '* * * * *',
                              'SELECT public.notification_tick()');
    ELSE
        RAISE NOTICE 'regnotify: pg_cron is off: no schedule; run the relay''s own ticker '
                     '(regnotify relay --self-tick) or call notification_tick() yourself';
    END IF;
END
$cron$;
