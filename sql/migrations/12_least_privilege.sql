-- 12 Least privilege whatever the database's default privileges are.
--
-- A Supabase project runs `ALTER DEFAULT PRIVILEGES ... IN SCHEMA public GRANT
-- ALL ON TABLES, FUNCTIONS, SEQUENCES TO anon, authenticated, service_role`,
-- so every object 01-07 created there came with ALL (TRUNCATE included,
-- which RLS does not cover) and EXECUTE on the SECURITY DEFINER tick.
-- `REVOKE ... FROM PUBLIC` does not undo a grant made to a role directly.
-- This file revokes everything from those roles on each object 01-07 (and
-- this file) created, named one by one (a dealership keeps other tables in
-- public), then grants exactly what each role needs. It also:
--   * lets customers change their own notification_pref and nothing else,
--     and records who changed it (notification_pref_changes);
--   * hides from a customer the deliveries sent to a contact that is no
--     longer the registration's (a previous owner of the number or address);
--   * leaves one permissive policy per role and action;
--   * moves pg_net out of schema public where Supabase's `extensions` exists.
-- It reads no protected setting and needs no superuser.

-- 1 ─ Who changed a customer's preference ───────────────────────────────────

CREATE TABLE IF NOT EXISTS public.notification_pref_changes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registration_id uuid NOT NULL REFERENCES public.registrations (id) ON DELETE CASCADE,
    old_pref        text,
    new_pref        text NOT NULL,
    -- customer: their own JWT; staff: an admin JWT; service: the service_role
    -- key; database: a direct connection (CLI, psql, the app's own URL).
    changed_by_kind text NOT NULL
                    CHECK (changed_by_kind IN ('customer', 'staff', 'service', 'database')),
    -- The JWT's sub, or the database role for a direct connection.
    changed_by      text,
    changed_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS ix_notification_pref_changes_registration
    ON public.notification_pref_changes (registration_id, changed_at);

ALTER TABLE public.notification_pref_changes ENABLE ROW LEVEL SECURITY;

-- A customer's UPDATE reaches registrations through the column grant and
-- policy below; admins use the same database role (authenticated), so the
-- grant alone cannot tell them apart: this trigger does. SECURITY INVOKER:
-- it must see the caller's role.
CREATE OR REPLACE FUNCTION public.registrations_customer_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
BEGIN
    IF current_user = 'authenticated' THEN
        IF NOT public.jwt_is_admin()
           AND (pg_catalog.to_jsonb(NEW) - 'notification_pref')
               IS DISTINCT FROM (pg_catalog.to_jsonb(OLD) - 'notification_pref') THEN
            RAISE EXCEPTION 'a customer may change only notification_pref'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    IF NEW.notification_pref IS DISTINCT FROM OLD.notification_pref THEN
        NEW.updated_at := pg_catalog.now();
    END IF;
    RETURN NEW;
END
$fn$;

-- SECURITY DEFINER: nobody else may write the audit. Who is taken from the
-- JWT PostgREST put in request.jwt.claims (the caller cannot set it).
CREATE OR REPLACE FUNCTION public.record_notification_pref_change()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $fn$
DECLARE
    v_claims jsonb := auth.jwt();
    v_kind   text;
BEGIN
    IF public.jwt_is_admin() THEN
        v_kind := 'staff';
    ELSIF v_claims ->> 'role' = 'service_role' THEN
        v_kind := 'service';
    ELSIF v_claims ->> 'role' = 'authenticated'
          AND public.jwt_customer_phone() = OLD.customer_phone THEN
        v_kind := 'customer';
    ELSE
        v_kind := 'database';
    END IF;
    INSERT INTO public.notification_pref_changes
        (registration_id, old_pref, new_pref, changed_by_kind, changed_by)
    VALUES
        (NEW.id, OLD.notification_pref, NEW.notification_pref, v_kind,
         CASE WHEN v_kind = 'database' THEN session_user::text
              ELSE coalesce(v_claims ->> 'sub', v_claims ->> 'role') END);
    RETURN NULL;
END
$fn$;

-- Named to fire before trg_queue_status_notification (triggers fire in name
-- order), so the guard sees the customer's row before that trigger edits it.
-- The WHEN keeps it off the staff's stage changes: the function (a call with a
-- pinned search_path) runs only for the API's customers and admins, and for a
-- change of preference.
DROP TRIGGER IF EXISTS registrations_customer_guard ON public.registrations;
CREATE TRIGGER registrations_customer_guard
    BEFORE UPDATE ON public.registrations
    FOR EACH ROW
    WHEN (current_user = 'authenticated'
          OR OLD.notification_pref IS DISTINCT FROM NEW.notification_pref)
    EXECUTE FUNCTION public.registrations_customer_guard();

DROP TRIGGER IF EXISTS registrations_pref_audit ON public.registrations;
CREATE TRIGGER registrations_pref_audit
    AFTER UPDATE OF notification_pref ON public.registrations
    FOR EACH ROW
    WHEN (OLD.notification_pref IS DISTINCT FROM NEW.notification_pref)
    EXECUTE FUNCTION public.record_notification_pref_change();

-- 2 ─ Revoke everything, then grant what each role needs ─────────────────────

REVOKE ALL ON TABLE
    public.registration_stages,
    public.registrations,
    public.registration_notifications,
    public.notification_config,
    public.notification_queue,
    public.sms_opt_outs,
    public.webhook_events,
    public.notification_pref_changes
FROM PUBLIC, anon, authenticated, service_role;

-- Identity columns draw from their sequence without a USAGE check, so no
-- role needs a grant on these.
REVOKE ALL ON SEQUENCE
    public.registration_notifications_id_seq,
    public.notification_queue_id_seq,
    public.notification_pref_changes_id_seq
FROM PUBLIC, anon, authenticated, service_role;

REVOKE ALL ON FUNCTION
    public.queue_status_notification(),
    public.notification_tick(),
    public.jwt_customer_phone(),
    public.jwt_is_admin(),
    public.registrations_customer_guard(),
    public.record_notification_pref_change()
FROM PUBLIC, anon, authenticated, service_role;

-- Stage labels are what the portal shows, signed in or not.
GRANT SELECT ON public.registration_stages TO anon, authenticated, service_role;

-- authenticated is both a customer and (app_metadata.role = admin) staff:
-- the policies decide rows, the guard trigger keeps customers to
-- notification_pref. UPDATE is granted column by column: every column staff
-- edit (those later migrations added included), never the key or created_at.
GRANT SELECT, INSERT, DELETE ON public.registrations TO authenticated;
DO $columns$
DECLARE
    v_column name;
BEGIN
    FOR v_column IN
        SELECT a.attname FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = 'public.registrations'::pg_catalog.regclass
          AND a.attnum > 0 AND NOT a.attisdropped
          AND a.attname NOT IN ('id', 'created_at')
    LOOP
        EXECUTE pg_catalog.format('GRANT UPDATE (%I) ON public.registrations TO authenticated',
                                  v_column);
    END LOOP;
END
$columns$;
GRANT SELECT ON public.registration_notifications TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.notification_queue TO authenticated;

-- service_role is the backend (relay, workers, staff tools).
GRANT SELECT, INSERT, UPDATE, DELETE
    ON public.registrations, public.registration_notifications, public.notification_queue,
       public.sms_opt_outs, public.webhook_events
    TO service_role;
-- The one config row is updated, never added or removed.
GRANT SELECT, UPDATE ON public.notification_config TO service_role;
GRANT SELECT ON public.notification_pref_changes TO service_role;

-- The policies call these as the querying role.
GRANT EXECUTE ON FUNCTION public.jwt_customer_phone(), public.jwt_is_admin() TO authenticated;
-- The SECURITY DEFINER tick: the owner (pg_cron runs the job as its owner)
-- and the backend. The trigger functions need no EXECUTE by anyone.
GRANT EXECUTE ON FUNCTION public.notification_tick() TO service_role;

-- 3 ─ Policies: one permissive policy per role and action ────────────────────

-- registrations: a customer's own rows (by the JWT's phone), or everything
-- for an admin; same rows as the two SELECT policies of 04.
DROP POLICY IF EXISTS customer_reads_own_registrations ON public.registrations;
DROP POLICY IF EXISTS admin_manages_registrations ON public.registrations;

DROP POLICY IF EXISTS authenticated_select ON public.registrations;
CREATE POLICY authenticated_select ON public.registrations
    FOR SELECT TO authenticated
    USING ((SELECT public.jwt_is_admin())
           OR customer_phone = (SELECT public.jwt_customer_phone()));

DROP POLICY IF EXISTS authenticated_update ON public.registrations;
CREATE POLICY authenticated_update ON public.registrations
    FOR UPDATE TO authenticated
    USING ((SELECT public.jwt_is_admin())
           OR customer_phone = (SELECT public.jwt_customer_phone()))
    WITH CHECK ((SELECT public.jwt_is_admin())
                OR customer_phone = (SELECT public.jwt_customer_phone()));

DROP POLICY IF EXISTS admin_inserts ON public.registrations;
CREATE POLICY admin_inserts ON public.registrations
    FOR INSERT TO authenticated
    WITH CHECK ((SELECT public.jwt_is_admin()));

DROP POLICY IF EXISTS admin_deletes ON public.registrations;
CREATE POLICY admin_deletes ON public.registrations
    FOR DELETE TO authenticated
    USING ((SELECT public.jwt_is_admin()));

-- registration_notifications: an admin sees all; a customer sees their own
-- registration's deliveries, except those sent to a phone or address that is
-- no longer the registration's (someone else's contact, after staff changed
-- it). Deliveries without a recipient (skipped, no contact) stay visible.
DROP POLICY IF EXISTS customer_reads_own_notifications ON public.registration_notifications;
DROP POLICY IF EXISTS admin_reads_notifications ON public.registration_notifications;

DROP POLICY IF EXISTS authenticated_select ON public.registration_notifications;
CREATE POLICY authenticated_select ON public.registration_notifications
    FOR SELECT TO authenticated
    USING ((SELECT public.jwt_is_admin()) OR EXISTS (
        SELECT 1 FROM public.registrations r
        WHERE r.id = registration_id
          AND r.customer_phone = (SELECT public.jwt_customer_phone())
          AND (recipient IS NULL
               OR (channel = 'sms' AND recipient = r.customer_phone)
               OR (channel = 'email' AND lower(recipient) = lower(r.customer_email)))));

-- Without BYPASSRLS (a plain owner could not give it, see 01) service_role
-- still reads the preference audit.
DROP POLICY IF EXISTS service_role_reads ON public.notification_pref_changes;
CREATE POLICY service_role_reads ON public.notification_pref_changes
    FOR SELECT TO service_role USING (true);

-- 4 ─ The migration ledger of older runners ──────────────────────────────────

-- `regnotify migrate` moves public.regnotify_migrations to schema regnotify;
-- where this file is applied by hand first, at least nobody else can reach it.
DO $ledger$
BEGIN
    IF pg_catalog.to_regclass('public.regnotify_migrations') IS NOT NULL THEN
        REVOKE ALL ON TABLE public.regnotify_migrations
            FROM PUBLIC, anon, authenticated, service_role;
        ALTER TABLE public.regnotify_migrations ENABLE ROW LEVEL SECURITY;
    END IF;
END
$ledger$;

-- 5 ─ pg_net out of schema public ────────────────────────────────────────────

-- pg_net keeps its functions in schema net whatever its extension schema, and
-- notification_tick() calls net.http_post by name, so only the extension's
-- own schema moves. pg_net is not relocatable (no ALTER EXTENSION ... SET
-- SCHEMA): it is dropped and created again, which loses only requests not yet
-- sent and past responses, and only when the request queue is empty, nothing
-- else depends on it (no CASCADE), and the role may do it. Otherwise: a NOTICE.
DO $net$
DECLARE
    v_pending bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e
                   WHERE e.extname = 'pg_net'
                     AND e.extnamespace = 'public'::pg_catalog.regnamespace) THEN
        RETURN;
    END IF;
    IF pg_catalog.to_regnamespace('extensions') IS NULL THEN
        RAISE NOTICE 'regnotify: pg_net is in schema public; create schema extensions and '
                     'reinstall it there (CREATE EXTENSION pg_net WITH SCHEMA extensions)';
        RETURN;
    END IF;
    BEGIN
        LOCK TABLE net.http_request_queue IN ACCESS EXCLUSIVE MODE NOWAIT;
        EXECUTE 'SELECT count(*) FROM net.http_request_queue' INTO v_pending;
        IF v_pending > 0 THEN
            RAISE NOTICE 'regnotify: pg_net stays in schema public: % request(s) in flight; '
                         'reinstall it WITH SCHEMA extensions when idle', v_pending;
            RETURN;
        END IF;
        DROP EXTENSION pg_net;
        CREATE EXTENSION pg_net WITH SCHEMA extensions;
        RAISE NOTICE 'regnotify: pg_net reinstalled in schema extensions';
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'regnotify: pg_net stays in schema public (%): reinstall it '
                     'WITH SCHEMA extensions as its owner', SQLERRM;
    END;
END
$net$;

-- 04 created pg_cron without a schema, so its extension record sits in the
-- first schema of the search path (public); its objects are in schema cron.
-- Supabase documents pg_cron WITH SCHEMA pg_catalog. pg_cron is not
-- relocatable either: reinstall it there, putting every job (and the run
-- history) back as it was, ids included. Only the extension's owner (a
-- superuser) can; anything that goes wrong undoes the whole step and says so.
DO $cron$
DECLARE
    v_jobs jsonb;
    v_runs jsonb;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension e
                   WHERE e.extname = 'pg_cron'
                     AND e.extnamespace = 'public'::pg_catalog.regnamespace) THEN
        RETURN;
    END IF;
    BEGIN
        SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(j)) INTO v_jobs FROM cron.job j;
        IF pg_catalog.to_regclass('cron.job_run_details') IS NOT NULL THEN
            EXECUTE 'SELECT pg_catalog.jsonb_agg(pg_catalog.to_jsonb(r)) '
                    'FROM cron.job_run_details r' INTO v_runs;
        END IF;
        DROP EXTENSION pg_cron;
        CREATE EXTENSION pg_cron WITH SCHEMA pg_catalog;
        IF v_jobs IS NOT NULL THEN
            INSERT INTO cron.job
            SELECT * FROM pg_catalog.jsonb_populate_recordset(NULL::cron.job, v_jobs);
            PERFORM pg_catalog.setval('cron.jobid_seq', max(j.jobid)) FROM cron.job j;
        END IF;
        IF v_runs IS NOT NULL THEN
            EXECUTE 'INSERT INTO cron.job_run_details SELECT * FROM '
                    'pg_catalog.jsonb_populate_recordset(NULL::cron.job_run_details, $1)'
                USING v_runs;
            EXECUTE 'SELECT pg_catalog.setval(''cron.runid_seq'', max(runid)) '
                    'FROM cron.job_run_details';
        END IF;
        RAISE NOTICE 'regnotify: pg_cron reinstalled in schema pg_catalog, its jobs kept';
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'regnotify: pg_cron stays in schema public (%): its owner can reinstall '
                     'it WITH SCHEMA pg_catalog', SQLERRM;
    END;
END
$cron$;
