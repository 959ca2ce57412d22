-- regnotify's schema as it stands after the last file in sql/migrations/.
--
-- Generated: run scripts/schema after adding a migration, never edit by hand
-- (tests/test_schema_file.py fails when this file and the migrations differ).
-- Made from a fresh vanilla PostgreSQL 15 database migrated by a
-- superuser, as `pg_dump --schema-only --no-owner` prints it, without its
-- session settings. There, 01_compat creates the API roles, schema auth and
-- auth.jwt(); on Supabase those are Supabase's own and 01 leaves them alone.
-- pg_cron's jobs (04, 11) are rows of the extension, not schema: not here.

-- Roles (cluster-wide: created by 01_compat where missing)

CREATE ROLE anon NOLOGIN NOINHERIT;
CREATE ROLE authenticated NOLOGIN NOINHERIT;
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;

-- SCHEMA auth

CREATE SCHEMA auth;

-- SCHEMA regnotify

CREATE SCHEMA regnotify;

-- SCHEMA regnotify_staff

CREATE SCHEMA regnotify_staff;

-- DOMAIN public.notification_closed_reason

CREATE DOMAIN public.notification_closed_reason AS text
	CONSTRAINT notification_closed_reason_check CHECK ((VALUE = ANY (ARRAY['processed'::text, 'no_net_change'::text, 'silenced'::text, 'manual'::text])));

-- FUNCTION auth.jwt()

CREATE FUNCTION auth.jwt() RETURNS jsonb
    LANGUAGE sql STABLE
    AS $$
                SELECT coalesce(
                    nullif(current_setting('request.jwt.claim', true), ''),
                    nullif(current_setting('request.jwt.claims', true), '')
                )::jsonb
            $$;

-- FUNCTION public.check_time_zone_name()

CREATE FUNCTION public.check_time_zone_name() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $_$
DECLARE
    v_column text := TG_ARGV[0];
    v_value  text := pg_catalog.to_jsonb(NEW) ->> v_column;
BEGIN
    IF v_value IS NULL THEN
        RETURN NEW;
    END IF;
    IF v_value ~ '^[A-Z][A-Za-z]*(/[A-Z][A-Za-z0-9_+-]*)+$' THEN
        BEGIN
            PERFORM pg_catalog.now() AT TIME ZONE v_value;
            RETURN NEW;
        EXCEPTION WHEN invalid_parameter_value THEN
            NULL;  -- not loadable: refused below
        END;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_timezone_names AS z WHERE z.name = v_value
    ) THEN
        RAISE EXCEPTION '%.%: % is not an IANA time zone name', TG_TABLE_NAME, v_column,
                        pg_catalog.quote_literal(v_value)
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a name such as ''America/Chicago'' or ''UTC'' '
                         '(SELECT name FROM pg_timezone_names lists them).';
    END IF;
    RETURN NEW;
END
$_$;

-- FUNCTION public.compile_queue_status_notification()

CREATE FUNCTION public.compile_queue_status_notification() RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
DECLARE
    v_window interval;
    v_max    interval;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtext('regnotify.compile_queue_status_notification'));
    SELECT c.debounce_window, c.max_wait INTO v_window, v_max
    FROM public.notification_config c
    WHERE c.id;
    -- No row: the defaults, as the lookup in 04 had.
    v_window := coalesce(v_window, interval '5 minutes');
    v_max := coalesce(v_max, interval '30 minutes');

    EXECUTE pg_catalog.format($ddl$
CREATE OR REPLACE FUNCTION public.queue_status_notification()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
-- Empty: every name below is schema-qualified, so a caller's search_path
-- cannot redirect this definer-rights function to objects of their own.
SET search_path = ''
AS $fn$
-- Written by public.compile_queue_status_notification() from
-- notification_config (debounce_window %1$s, max_wait %2$s); a change to
-- those columns rewrites it. Edit the template there, not this copy.
BEGIN
    IF NEW.current_stage IS DISTINCT FROM OLD.current_stage THEN
        INSERT INTO public.notification_queue AS q
            (registration_id, old_stage, new_stage, send_after, notify_customer)
        VALUES
            (NEW.id, OLD.current_stage, NEW.current_stage, now() + %1$L::interval,
             coalesce(NEW.pending_notify_customer, true))
        ON CONFLICT (registration_id) WHERE (sent = false) DO UPDATE
        SET new_stage       = EXCLUDED.new_stage,
            -- The burst's first change started the clock: keep changing and
            -- the message still leaves by created_at + max_wait.
            send_after      = least(EXCLUDED.send_after, q.created_at + %2$L::interval),
            notify_customer = EXCLUDED.notify_customer,
            change_count    = q.change_count + 1,
            updated_at      = EXCLUDED.updated_at;

        NEW.pending_notify_customer := NULL;
        NEW.updated_at := now();
        NEW.stage_changed_at := now();
    END IF;
    RETURN NEW;
END
$fn$
$ddl$, v_window, v_max);
END
$_$;

-- FUNCTION public.jwt_customer_phone()

CREATE FUNCTION public.jwt_customer_phone() RETURNS text
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
    SELECT '+' || ltrim(nullif(auth.jwt() ->> 'phone', ''), '+')
$$;

-- FUNCTION public.jwt_is_admin()

CREATE FUNCTION public.jwt_is_admin() RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
    SELECT coalesce(auth.jwt() -> 'app_metadata' ->> 'role', '') = 'admin'
       AND (coalesce(auth.jwt() ->> 'iss', '') <> 'regnotify'
            OR EXISTS (SELECT 1 FROM public.staff_members AS s
                       WHERE s.email = lower(nullif(auth.jwt() ->> 'email', ''))
                         AND s.active))
$$;

-- FUNCTION public.notification_config_recompile()

CREATE FUNCTION public.notification_config_recompile() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
BEGIN
    PERFORM public.compile_queue_status_notification();
    RETURN NULL;
END
$$;

-- FUNCTION public.notification_tick()

CREATE FUNCTION public.notification_tick() RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $_$
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
$_$;

-- FUNCTION public.notification_timeline(uuid)

CREATE FUNCTION public.notification_timeline(p_registration_id uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
#variable_conflict use_column
BEGIN
    RETURN (
    SELECT pg_catalog.jsonb_build_object(
        'registration_id', p_registration_id,
        'registration', reg.doc,
        'events', coalesce((
            SELECT pg_catalog.jsonb_agg(e.event ORDER BY e.event_at, e.event ->> 'kind', e.tie)
            FROM (
                SELECT * FROM public.timeline_stage_changes(p_registration_id)
                UNION ALL SELECT * FROM public.timeline_messages(p_registration_id)
                UNION ALL SELECT * FROM public.timeline_holds(p_registration_id)
                UNION ALL SELECT * FROM public.timeline_fallbacks(p_registration_id)
                UNION ALL SELECT * FROM public.timeline_preference_changes(p_registration_id)
                UNION ALL SELECT * FROM public.timeline_replies(p_registration_id)
                UNION ALL SELECT * FROM public.timeline_staff_actions(p_registration_id)
            ) AS e), '[]'::jsonb))
    FROM (SELECT public.timeline_registration(p_registration_id) AS doc) AS reg
    -- Unknown or not the caller's: NULL, so neither door can tell which.
    WHERE reg.doc IS NOT NULL
    );
END
$$;

-- FUNCTION public.prune_notifications(integer)

CREATE FUNCTION public.prune_notifications(batch_size integer DEFAULT 5000) RETURNS TABLE(kind text, deleted bigint)
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $_$
DECLARE
    c record;
    v_digests bigint;
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

    kind := 'processed_queue';
    deleted := 0;
    IF c.retain_processed_queue IS NOT NULL THEN
        DELETE FROM public.notification_queue AS q
        WHERE q.id = ANY(ARRAY(
            SELECT o.id FROM public.notification_queue AS o
            WHERE o.sent
              AND coalesce(o.processed_at, o.updated_at)
                  < pg_catalog.now() - c.retain_processed_queue
            -- 14's index expression: the scan stops at the first young row.
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

    -- Replies, then the closed digests that carried them; a digest still
    -- pending or sending stays whatever its age.
    kind := 'replies';
    deleted := 0;
    IF c.retain_deliveries IS NOT NULL THEN
        DELETE FROM public.inbound_messages AS m
        WHERE m.id = ANY(ARRAY(
            SELECT o.id FROM public.inbound_messages AS o
            WHERE o.received_at < pg_catalog.now() - c.retain_deliveries
            ORDER BY o.id
            LIMIT batch_size
            FOR UPDATE SKIP LOCKED));
        GET DIAGNOSTICS deleted = ROW_COUNT;
        DELETE FROM public.reply_digests AS d
        WHERE d.id = ANY(ARRAY(
            SELECT o.id FROM public.reply_digests AS o
            WHERE o.status IN ('sent', 'failed')
              AND o.created_at < pg_catalog.now() - c.retain_deliveries
            ORDER BY o.id
            LIMIT batch_size
            FOR UPDATE SKIP LOCKED));
        GET DIAGNOSTICS v_digests = ROW_COUNT;
        deleted := deleted + v_digests;
    END IF;
    RETURN NEXT;
END
$_$;

-- FUNCTION public.prune_notifications_preview()

CREATE FUNCTION public.prune_notifications_preview() RETURNS TABLE(kind text, older_than interval, due bigint, oldest timestamp with time zone)
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $_$
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
      AND n.status NOT IN ('queued', 'sending')
      AND n.created_at < pg_catalog.now() - older_than;
    RETURN NEXT;

    kind := 'replies';
    older_than := c.retain_deliveries;
    SELECT count(*), min(m.received_at) INTO due, oldest
    FROM public.inbound_messages AS m
    WHERE older_than IS NOT NULL AND m.received_at < pg_catalog.now() - older_than;
    RETURN NEXT;
END
$_$;

-- FUNCTION public.queue_status_notification()

CREATE FUNCTION public.queue_status_notification() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
-- Written by public.compile_queue_status_notification() from
-- notification_config (debounce_window 00:05:00, max_wait 00:30:00); a change to
-- those columns rewrites it. Edit the template there, not this copy.
BEGIN
    IF NEW.current_stage IS DISTINCT FROM OLD.current_stage THEN
        INSERT INTO public.notification_queue AS q
            (registration_id, old_stage, new_stage, send_after, notify_customer)
        VALUES
            (NEW.id, OLD.current_stage, NEW.current_stage, now() + '00:05:00'::interval,
             coalesce(NEW.pending_notify_customer, true))
        ON CONFLICT (registration_id) WHERE (sent = false) DO UPDATE
        SET new_stage       = EXCLUDED.new_stage,
            -- The burst's first change started the clock: keep changing and
            -- the message still leaves by created_at + max_wait.
            send_after      = least(EXCLUDED.send_after, q.created_at + '00:30:00'::interval),
            notify_customer = EXCLUDED.notify_customer,
            change_count    = q.change_count + 1,
            updated_at      = EXCLUDED.updated_at;

        NEW.pending_notify_customer := NULL;
        NEW.updated_at := now();
        NEW.stage_changed_at := now();
    END IF;
    RETURN NEW;
END
$$;

-- FUNCTION public.quiet_hours_release_at(timestamp with time zone, text, time without time zone, time without time zone)

CREATE FUNCTION public.quiet_hours_release_at(p_at timestamp with time zone, p_zone text, p_start time without time zone, p_end time without time zone) RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
    SELECT CASE
        WHEN p_start IS NULL OR p_end IS NULL OR p_zone IS NULL OR p_start = p_end THEN NULL
        -- Same-day window (say 13:00-14:00).
        WHEN p_start < p_end THEN
            CASE WHEN l.t >= p_start AND l.t < p_end
                 THEN (l.d + p_end) AT TIME ZONE p_zone END
        -- Overnight window (21:00-08:00): before midnight it opens tomorrow.
        WHEN l.t >= p_start THEN ((l.d + 1) + p_end) AT TIME ZONE p_zone
        WHEN l.t < p_end THEN (l.d + p_end) AT TIME ZONE p_zone
    END
    FROM (SELECT (p_at AT TIME ZONE p_zone)::date AS d,
                 (p_at AT TIME ZONE p_zone)::time AS t) AS l
$$;

-- FUNCTION public.quiet_hours_release_now(text, time without time zone, time without time zone)

CREATE FUNCTION public.quiet_hours_release_now(p_zone text, p_start time without time zone, p_end time without time zone) RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
    SELECT public.quiet_hours_release_at(public.regnotify_now(), p_zone, p_start, p_end)
           - (public.regnotify_now() - pg_catalog.now())
$$;

-- FUNCTION public.record_notification_pref_change()

CREATE FUNCTION public.record_notification_pref_change() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
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
$$;

-- FUNCTION public.registrations_customer_guard()

CREATE FUNCTION public.registrations_customer_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
BEGIN
    IF current_user = 'authenticated' THEN
        IF NOT public.jwt_is_admin()
           AND (pg_catalog.to_jsonb(NEW) - 'notification_pref' - 'language')
               IS DISTINCT FROM (pg_catalog.to_jsonb(OLD) - 'notification_pref' - 'language')
        THEN
            RAISE EXCEPTION 'a customer may change only notification_pref and language'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
    END IF;
    IF NEW.notification_pref IS DISTINCT FROM OLD.notification_pref
       OR NEW.language IS DISTINCT FROM OLD.language THEN
        NEW.updated_at := pg_catalog.now();
    END IF;
    RETURN NEW;
END
$$;

-- FUNCTION public.regnotify_check_vocabulary()

CREATE FUNCTION public.regnotify_check_vocabulary() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
DECLARE
    v_column text;
    v_value text;
    v_known boolean;
BEGIN
    FOREACH v_column IN ARRAY TG_ARGV LOOP
        v_value := pg_catalog.to_jsonb(NEW) ->> v_column;
        CONTINUE WHEN v_value IS NULL;
        IF v_column = 'notification_pref' THEN
            v_known := EXISTS (SELECT 1 FROM public.notification_preferences AS p
                               WHERE p.pref = v_value);
        ELSE
            v_known := EXISTS (SELECT 1 FROM public.notification_languages AS l
                               WHERE l.language = v_value);
        END IF;
        IF NOT v_known THEN
            RAISE EXCEPTION 'new row for relation "%" violates check constraint "%"',
                TG_TABLE_NAME, TG_TABLE_NAME || '_' || v_column || '_check'
                USING ERRCODE = 'check_violation', SCHEMA = TG_TABLE_SCHEMA,
                      TABLE = TG_TABLE_NAME, COLUMN = v_column,
                      CONSTRAINT = TG_TABLE_NAME || '_' || v_column || '_check',
                      DETAIL = pg_catalog.format('%s %L is not a known value.',
                                                 v_column, v_value);
        END IF;
    END LOOP;
    RETURN NEW;
END
$$;

-- FUNCTION public.regnotify_now()

CREATE FUNCTION public.regnotify_now() RETURNS timestamp with time zone
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
    SELECT pg_catalog.now() + pg_catalog.make_interval(secs => coalesce(
        NULLIF(pg_catalog.current_setting('regnotify.clock_offset_s', true), '')
            ::float8, 0))
$$;

-- FUNCTION public.regnotify_skip_reason(text, text, text, text, boolean, boolean, text, text)

CREATE FUNCTION public.regnotify_skip_reason(p_channel text, p_pref text, p_phone text, p_email text, p_fallback boolean DEFAULT false, p_notify_customer boolean DEFAULT true, p_old_stage text DEFAULT NULL::text, p_new_stage text DEFAULT NULL::text) RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
BEGIN
    IF NOT coalesce((SELECT CASE WHEN p_fallback THEN pg_catalog.cardinality(p.channels) > 0
                                 ELSE p_channel = ANY (p.channels) END
                     FROM public.notification_preferences AS p
                     WHERE p.pref = p_pref), false) THEN
        RETURN 'preference';
    END IF;
    IF NOT p_notify_customer THEN
        RETURN 'silenced';
    END IF;
    IF p_old_stage = p_new_stage THEN
        RETURN 'no_net_change';
    END IF;
    IF coalesce(CASE p_channel WHEN 'sms' THEN p_phone ELSE p_email END, '') = '' THEN
        RETURN 'no_contact';
    END IF;
    IF (p_channel = 'sms' OR p_fallback) AND EXISTS (
        SELECT 1 FROM public.sms_opt_outs AS o WHERE o.phone = p_phone AND o.opted_out
    ) THEN
        RETURN 'opted_out';
    END IF;
    RETURN NULL;
END
$$;

-- FUNCTION public.request_notification(uuid, boolean)

CREATE FUNCTION public.request_notification(p_registration_id uuid, p_bypass_quiet_hours boolean DEFAULT false) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
DECLARE
    v_claims   jsonb := coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true),
                                        '')::jsonb, '{}'::jsonb);
    v_reg      record;
    v_cfg      record;
    v_channel  text;
    v_reason   text;
    v_channels text[] := '{}';
    v_skipped  jsonb := '[]'::jsonb;
    v_zone     text;
    v_until    timestamptz;
    v_answer   jsonb;
BEGIN
    -- The backend first, in its own IF: service_role may not execute
    -- jwt_is_admin(), and PL/pgSQL checks that when the expression is set up.
    IF v_claims ->> 'role' = 'service_role' THEN
        NULL;
    ELSIF NOT coalesce(public.jwt_is_admin(), false) THEN
        RAISE EXCEPTION 'only staff (an admin) or the backend may request a notification'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_bypass_quiet_hours IS NULL THEN
        p_bypass_quiet_hours := false;
    END IF;

    -- FOR UPDATE: a concurrent staff edit of the contact waits for this decision.
    SELECT r.id, r.customer_phone, r.customer_email, r.notification_pref, r.time_zone
    INTO v_reg
    FROM public.registrations AS r
    WHERE r.id = p_registration_id
    FOR UPDATE OF r;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no registration %', p_registration_id USING ERRCODE = 'no_data_found';
    END IF;

    -- The queue claim's decision for each channel (regnotify_skip_reason), said
    -- beforehand. A channel the preference leaves out is no news; a
    -- preference that leaves out every channel is the answer.
    FOREACH v_channel IN ARRAY ARRAY['sms', 'email'] LOOP
        v_reason := public.regnotify_skip_reason(v_channel, v_reg.notification_pref,
                                                 v_reg.customer_phone, v_reg.customer_email);
        IF v_reason IS NULL THEN
            v_channels := v_channels || v_channel;
        ELSIF v_reason <> 'preference' THEN
            v_skipped := v_skipped || pg_catalog.jsonb_build_object(
                'channel', v_channel, 'reason', v_reason,
                'detail', CASE v_channel WHEN 'sms' THEN 'no SMS: ' ELSE 'no e-mail: ' END
                          || CASE
                                 WHEN v_reason = 'no_contact' AND v_channel = 'sms'
                                     THEN 'no phone number on file'
                                 WHEN v_reason = 'no_contact' THEN 'no address on file'
                                 WHEN v_reason = 'opted_out'
                                     THEN 'the phone number opted out (it can text START)'
                                 ELSE (SELECT s.meaning FROM public.notification_skip_reasons AS s
                                       WHERE s.reason = v_reason)
                             END);
        END IF;
    END LOOP;
    IF pg_catalog.cardinality(v_channels) = 0 AND pg_catalog.jsonb_array_length(v_skipped) = 0
    THEN
        RETURN pg_catalog.jsonb_build_object(
            'queued', false, 'reason', 'preference',
            'detail', 'the customer chose no messages (notification_pref = '
                      || v_reg.notification_pref || ')',
            'skipped', '[]'::jsonb);
    END IF;
    IF pg_catalog.cardinality(v_channels) = 0 THEN
        RETURN pg_catalog.jsonb_build_object(
            'queued', false, 'reason', v_skipped -> 0 ->> 'reason',
            'detail', (SELECT pg_catalog.string_agg(s ->> 'detail', '; ')
                       FROM pg_catalog.jsonb_array_elements(v_skipped) AS s),
            'skipped', v_skipped);
    END IF;

    -- The same row `regnotify send` always wrote: a pending burst is made
    -- due; otherwise a row without old stage (the claim's 'manual').
    UPDATE public.notification_queue
    SET send_after = pg_catalog.now(), notify_customer = true,
        bypass_quiet_hours = p_bypass_quiet_hours, updated_at = pg_catalog.now()
    WHERE registration_id = p_registration_id AND sent = false;
    IF NOT FOUND THEN
        INSERT INTO public.notification_queue
            (registration_id, old_stage, new_stage, send_after, bypass_quiet_hours)
        SELECT r.id, NULL, r.current_stage, pg_catalog.now(), p_bypass_quiet_hours
        FROM public.registrations AS r
        WHERE r.id = p_registration_id;
    END IF;

    v_answer := pg_catalog.jsonb_build_object(
        'queued', true, 'channels', pg_catalog.to_jsonb(v_channels),
        'skipped', v_skipped, 'bypass_quiet_hours', p_bypass_quiet_hours);

    -- When a quiet channel will wait for the customer's window to open.
    SELECT c.quiet_hours_start, c.quiet_hours_end, c.quiet_hours_channels, c.default_time_zone
    INTO v_cfg
    FROM public.notification_config AS c WHERE c.id;
    IF FOUND AND NOT p_bypass_quiet_hours
       AND v_channels && coalesce(v_cfg.quiet_hours_channels, '{}'::text[]) THEN
        v_zone := coalesce(v_reg.time_zone, v_cfg.default_time_zone);
        v_until := public.quiet_hours_release_at(pg_catalog.now(), v_zone,
                                                 v_cfg.quiet_hours_start, v_cfg.quiet_hours_end);
        IF v_until IS NOT NULL THEN
            v_answer := v_answer || pg_catalog.jsonb_build_object(
                'held_until', v_until,
                'held_until_local', pg_catalog.to_char(v_until AT TIME ZONE v_zone, 'HH24:MI'),
                'time_zone', v_zone,
                'held_channels', pg_catalog.to_jsonb(ARRAY(
                    SELECT ch FROM pg_catalog.unnest(v_channels) AS ch
                    WHERE ch = ANY(v_cfg.quiet_hours_channels))));
        END IF;
    END IF;

    -- The wake-up, so the message leaves within seconds: the backend runs the
    -- tick itself (pg_net's POST /tick, or NOTIFY); staff's NOTIFY reaches a
    -- relay that LISTENs (delivered at commit), and the relay's API also
    -- wakes the queue after the call, as `regnotify send` does.
    IF pg_catalog.has_function_privilege('public.notification_tick()', 'EXECUTE') THEN
        PERFORM public.notification_tick();
    ELSE
        PERFORM pg_catalog.pg_notify('notification_tick', pg_catalog.json_build_object(
            'source', 'request_notification', 'at', pg_catalog.now())::text);
    END IF;
    RETURN v_answer;
END
$$;

-- FUNCTION public.staff_me()

CREATE FUNCTION public.staff_me() RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
    SELECT pg_catalog.jsonb_build_object('email', s.email, 'name', s.name)
    FROM public.staff_members AS s
    WHERE s.email = lower(nullif(auth.jwt() ->> 'email', ''))
      AND s.active
      AND public.jwt_is_admin()
$$;

-- FUNCTION public.timeline_caller_is_customer()

CREATE FUNCTION public.timeline_caller_is_customer() RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
BEGIN
    -- Staff, the backend and direct connections are not customers. Only
    -- authenticated may execute jwt_is_admin() (anon is never admin), so it is
    -- asked last, in its own statement.
    IF current_user::text NOT IN ('anon', 'authenticated') THEN
        RETURN false;
    END IF;
    IF current_user::text = 'anon' THEN
        RETURN true;
    END IF;
    RETURN NOT coalesce(public.jwt_is_admin(), false);
END
$$;

-- FUNCTION public.timeline_fallbacks(uuid)

CREATE FUNCTION public.timeline_fallbacks(p_registration_id uuid) RETURNS TABLE(event_at timestamp with time zone, tie bigint, event jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT n.created_at, n.id, pg_catalog.jsonb_build_object(
        'kind', 'fallback',
        'at', n.created_at,
        'delivery_id', n.id,
        'channel', n.channel,
        'instead_of', n.fallback_for,
        'failed_channel', fb.channel,
        'failed_status', fb.status,
        'failed_error_code', fb.error_code)
    FROM public.registration_notifications AS n
    LEFT JOIN public.registration_notifications AS fb ON fb.id = n.fallback_for
    WHERE n.registration_id = p_registration_id AND n.fallback_for IS NOT NULL
    ;
END
$$;

-- FUNCTION public.timeline_holds(uuid)

CREATE FUNCTION public.timeline_holds(p_registration_id uuid) RETURNS TABLE(event_at timestamp with time zone, tie bigint, event jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT n.created_at, n.id, pg_catalog.jsonb_build_object(
        'kind', 'hold',
        'at', n.created_at,
        'delivery_id', n.id,
        'channel', n.channel,
        'held_until', n.held_until,
        'held_until_local',
            pg_catalog.to_char(n.held_until AT TIME ZONE n.hold_zone, 'HH24:MI'),
        'time_zone', n.hold_zone,
        'still_held', n.hold_reason IS NOT NULL)
    FROM public.registration_notifications AS n
    WHERE n.registration_id = p_registration_id AND n.held_until IS NOT NULL
    ;
END
$$;

-- FUNCTION public.timeline_messages(uuid)

CREATE FUNCTION public.timeline_messages(p_registration_id uuid) RETURNS TABLE(event_at timestamp with time zone, tie bigint, event jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT n.created_at, n.id, pg_catalog.jsonb_build_object(
        'kind', 'message',
        'at', n.created_at,
        'id', n.id,
        'queue_id', n.queue_id,
        'channel', n.channel,
        'recipient', n.recipient,
        'status', n.status,
        'skip_reason', n.skip_reason,
        'old_stage', n.old_stage,
        'new_stage', n.new_stage,
        'provider', n.provider,
        'provider_message_id', n.provider_message_id,
        'template_used', n.template_used,
        'subject', n.subject,
        'language', n.language,
        'attempts', n.attempts,
        'error_code', n.error_code,
        'error_message', n.error_message,
        'next_attempt_at', n.next_attempt_at,
        'created_at', n.created_at,
        'updated_at', n.updated_at,
        'sent_at', n.sent_at,
        'delivered_at', n.delivered_at,
        'hold_reason', n.hold_reason,
        'held_until', n.held_until,
        'hold_zone', n.hold_zone,
        'held_until_local',
            pg_catalog.to_char(n.held_until AT TIME ZONE n.hold_zone, 'HH24:MI'),
        'fallback_for', n.fallback_for,
        'fallback_for_channel', fb.channel,
        'fallback_for_status', fb.status,
        'fallback_for_error_code', fb.error_code,
        'replaced_by', (SELECT x.id FROM public.registration_notifications AS x
                        WHERE x.fallback_for = n.id LIMIT 1),
        -- Failed with its outcome unknown (14): maybe accepted all the same.
        'outcome_unknown', n.outcome_unknown,
        -- Skipped for the preference at its claim for sending: the change
        -- that did it (12's audit), newest between creation and skip.
        'pref_changed_at', pc.changed_at,
        'pref_changed_from', pc.old_pref,
        'pref_changed_to', pc.new_pref,
        'pref_changed_by_kind', pc.changed_by_kind)
    FROM public.registration_notifications AS n
    LEFT JOIN public.registration_notifications AS fb ON fb.id = n.fallback_for
    LEFT JOIN LATERAL (
        SELECT c.changed_at, c.old_pref, c.new_pref, c.changed_by_kind
        FROM public.notification_pref_changes AS c
        WHERE n.status = 'skipped' AND n.skip_reason = 'preference'
          AND c.registration_id = n.registration_id
          AND c.changed_at >= n.created_at AND c.changed_at <= n.updated_at
        ORDER BY c.changed_at DESC, c.id DESC
        LIMIT 1
    ) AS pc ON true
    WHERE n.registration_id = p_registration_id
    ;
END
$$;

-- FUNCTION public.timeline_preference_changes(uuid)

CREATE FUNCTION public.timeline_preference_changes(p_registration_id uuid) RETURNS TABLE(event_at timestamp with time zone, tie bigint, event jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT c.changed_at, c.id, pg_catalog.jsonb_build_object(
        'kind', 'preference_change',
        'at', c.changed_at,
        'id', c.id,
        'changed_at', c.changed_at,
        'old_pref', c.old_pref,
        'new_pref', c.new_pref,
        'changed_by_kind', c.changed_by_kind,
        -- Staff and the backend see who. A customer sees no id at all, not
        -- even an earlier holder's of the registration: `changed_by` is
        -- "you" for their own change (by their token's sub) and NULL
        -- otherwise; `changed_by_label` says it in words: "you", "staff" or
        -- "the dealership" (anyone else: the backend, a direct connection,
        -- a customer who held the registration before).
        'changed_by', CASE
            WHEN NOT public.timeline_caller_is_customer() THEN c.changed_by
            WHEN c.changed_by_kind = 'customer'
                 AND c.changed_by IS NOT DISTINCT FROM (auth.jwt() ->> 'sub') THEN 'you'
            END,
        'changed_by_label', CASE
            WHEN c.changed_by_kind = 'customer'
                 AND c.changed_by IS NOT DISTINCT FROM (auth.jwt() ->> 'sub') THEN 'you'
            WHEN c.changed_by_kind = 'staff' THEN 'staff'
            ELSE 'the dealership' END)
    FROM public.notification_pref_changes AS c
    WHERE c.registration_id = p_registration_id
    ;
END
$$;

-- FUNCTION public.timeline_registration(uuid)

CREATE FUNCTION public.timeline_registration(p_registration_id uuid) RETURNS jsonb
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
#variable_conflict use_column
BEGIN
    RETURN (
    SELECT pg_catalog.jsonb_build_object(
        'id', r.id,
        'customer_name', r.customer_name,
        'customer_phone', r.customer_phone,
        'customer_email', r.customer_email,
        'notification_pref', r.notification_pref,
        'current_stage', r.current_stage,
        'current_stage_label', st.label,
        'current_stage_position', st.position,
        'vehicle_year', r.vehicle_year,
        'vehicle_make', r.vehicle_make,
        'vehicle_model', r.vehicle_model,
        'vin', r.vin,
        'plate_number', r.plate_number,
        'created_at', r.created_at,
        'updated_at', r.updated_at,
        'sms_opted_out', coalesce(o.opted_out, false),
        'language', r.language,
        -- The dealership's default is the backend's and staff's to read; a
        -- customer gets NULL here and their page follows their browser.
        'effective_language', coalesce(r.language, (
            SELECT c.default_language FROM public.notification_config AS c WHERE c.id)))
    FROM public.registrations AS r
    LEFT JOIN public.registration_stages AS st ON st.stage = r.current_stage
    LEFT JOIN public.sms_opt_outs AS o ON o.phone = r.customer_phone
    WHERE r.id = p_registration_id
    );
END
$$;

-- FUNCTION public.timeline_replies(uuid)

CREATE FUNCTION public.timeline_replies(p_registration_id uuid) RETURNS TABLE(event_at timestamp with time zone, tie bigint, event jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT r.at, 0::bigint, pg_catalog.jsonb_build_object(
        'kind', 'reply',
        'at', r.at,
        'body', r.body,
        'keyword', r.keyword,
        'keyword_kind', r.keyword_kind)
    FROM public.registration_replies AS r
    WHERE r.registration_id = p_registration_id
    ;
END
$$;

-- FUNCTION public.timeline_staff_actions(uuid)

CREATE FUNCTION public.timeline_staff_actions(p_registration_id uuid) RETURNS TABLE(event_at timestamp with time zone, tie bigint, event jsonb)
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
    SELECT a.at, a.id, pg_catalog.jsonb_build_object(
        'kind', 'staff_action',
        'at', a.at,
        'id', a.id,
        'action', a.action,
        'actor_email', a.actor_email,
        'detail', a.detail)
    FROM public.staff_actions AS a
    WHERE a.registration_id = p_registration_id
$$;

-- FUNCTION public.timeline_stage_changes(uuid)

CREATE FUNCTION public.timeline_stage_changes(p_registration_id uuid) RETURNS TABLE(event_at timestamp with time zone, tie bigint, event jsonb)
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT q.created_at, q.id, pg_catalog.jsonb_build_object(
        'kind', 'stage_change',
        'at', q.created_at,
        'queue_id', q.id,
        'created_at', q.created_at,
        'updated_at', q.updated_at,
        'old_stage', q.old_stage,
        'new_stage', q.new_stage,
        'change_count', q.change_count,
        'notify_customer', q.notify_customer,
        'send_after', q.send_after,
        'sent', q.sent,
        'pending', NOT q.sent,
        'closed_reason', q.closed_reason,
        'processed_at', q.processed_at,
        'bypass_quiet_hours', q.bypass_quiet_hours)
    FROM public.notification_queue AS q
    WHERE q.registration_id = p_registration_id
    ;
END
$$;

-- FUNCTION regnotify.adopted(text)

CREATE FUNCTION regnotify.adopted(p_key text) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
    SELECT EXISTS (SELECT 1 FROM regnotify.baseline b WHERE b.key = p_key)
       AND NOT EXISTS (SELECT 1 FROM regnotify.objects o
                       WHERE o.key = p_key AND o.state = 'created')
$$;

-- FUNCTION regnotify.created(text)

CREATE FUNCTION regnotify.created(p_key text) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path TO ''
    AS $$
    SELECT EXISTS (SELECT 1 FROM regnotify.objects o
                   WHERE o.key = p_key AND o.state = 'created')
$$;

-- FUNCTION regnotify_staff.find_registrations(text, text, text, text, integer)

CREATE FUNCTION regnotify_staff.find_registrations(p_phone text, p_email text, p_vin text, p_name text, p_limit integer DEFAULT 500) RETURNS SETOF uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 20
    SET search_path TO ''
    AS $$
BEGIN
    PERFORM regnotify_staff.require_admin();
    IF p_phone IS NOT NULL THEN
        RETURN QUERY SELECT r.id FROM public.registrations AS r
                     WHERE r.customer_phone = p_phone LIMIT p_limit;
    ELSIF p_email IS NOT NULL THEN
        RETURN QUERY SELECT r.id FROM public.registrations AS r
                     WHERE lower(r.customer_email) = lower(p_email) LIMIT p_limit;
    ELSIF p_vin IS NOT NULL THEN
        RETURN QUERY SELECT r.id FROM public.registrations AS r
                     WHERE upper(r.vin) LIKE pg_catalog.replace(pg_catalog.replace(
                               pg_catalog.replace(upper(p_vin), '\', '\\'), '%', '\%'),
                               '_', '\_') || '%'
                     LIMIT p_limit;
    ELSIF p_name IS NOT NULL THEN
        RETURN QUERY SELECT r.id FROM public.registrations AS r
                     WHERE pg_catalog.to_tsvector('simple'::regconfig, r.customer_name)
                           @@ pg_catalog.to_tsquery('simple'::regconfig, p_name)
                     LIMIT p_limit;
    END IF;
END
$$;

-- FUNCTION regnotify_staff.mark_handled(text, bigint)

CREATE FUNCTION regnotify_staff.mark_handled(p_kind text, p_id bigint) RETURNS boolean
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
DECLARE
    v_reg uuid;
BEGIN
    PERFORM regnotify_staff.require_admin();
    IF p_kind = 'delivery' THEN
        UPDATE public.registration_notifications
        SET handled_at = pg_catalog.now()
        WHERE id = p_id AND handled_at IS NULL
        RETURNING registration_id INTO v_reg;
    ELSIF p_kind = 'reply' THEN
        UPDATE public.inbound_messages
        SET handled_at = pg_catalog.now()
        WHERE id = p_id AND handled_at IS NULL
        RETURNING registration_id INTO v_reg;
    ELSE
        RAISE EXCEPTION 'mark_handled: kind is delivery or reply, not %', p_kind
            USING ERRCODE = '22023';
    END IF;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM regnotify_staff.record_action(v_reg, 'mark_handled',
        pg_catalog.jsonb_build_object('kind', p_kind, 'id', p_id));
    RETURN true;
END
$$;

-- FUNCTION regnotify_staff.record_action(uuid, text, jsonb)

CREATE FUNCTION regnotify_staff.record_action(p_registration_id uuid, p_action text, p_detail jsonb) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
DECLARE
    v_id bigint;
BEGIN
    PERFORM regnotify_staff.require_admin();
    INSERT INTO public.staff_actions (registration_id, actor_email, actor_sub, action, detail)
    VALUES (p_registration_id, lower(nullif(auth.jwt() ->> 'email', '')),
            auth.jwt() ->> 'sub', p_action, coalesce(p_detail, '{}'::jsonb))
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

-- FUNCTION regnotify_staff.require_admin()

CREATE FUNCTION regnotify_staff.require_admin() RETURNS void
    LANGUAGE plpgsql STABLE
    SET search_path TO ''
    AS $$
BEGIN
    IF NOT coalesce(public.jwt_is_admin(), false) THEN
        RAISE EXCEPTION 'only staff may do this' USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;

-- FUNCTION regnotify_staff.resend(bigint)

CREATE FUNCTION regnotify_staff.resend(p_delivery_id bigint) RETURNS jsonb
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path TO ''
    AS $$
DECLARE
    v_row record;
BEGIN
    PERFORM regnotify_staff.require_admin();
    UPDATE public.registration_notifications AS n
    SET status = 'queued', attempts_at_redrive = n.attempts, error_code = NULL,
        error_message = NULL, next_attempt_at = NULL, lease_until = NULL,
        updated_at = pg_catalog.now(),
        email_batch_id = CASE WHEN n.error_code = 'outcome_unknown' THEN NULL
                              ELSE n.email_batch_id END,
        handled_at = pg_catalog.now()
    FROM (SELECT o.id, o.error_code, o.outcome_unknown FROM public.registration_notifications AS o
          WHERE o.id = p_delivery_id FOR UPDATE) AS before
    WHERE n.id = before.id AND n.status = 'failed'
    RETURNING n.id, n.channel, n.registration_id, before.error_code, before.outcome_unknown
    INTO v_row;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    PERFORM regnotify_staff.record_action(v_row.registration_id, 'resend',
        pg_catalog.jsonb_build_object('delivery_id', v_row.id, 'channel', v_row.channel,
                                      'error_code', v_row.error_code,
                                      'may_arrive_twice', v_row.outcome_unknown));
    RETURN pg_catalog.jsonb_build_object('id', v_row.id, 'channel', v_row.channel,
                                         'registration_id', v_row.registration_id);
END
$$;

-- FUNCTION regnotify_staff.send_now(uuid, boolean)

CREATE FUNCTION regnotify_staff.send_now(p_registration_id uuid, p_bypass_quiet_hours boolean) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
DECLARE
    v_answer jsonb;
BEGIN
    PERFORM regnotify_staff.require_admin();
    v_answer := public.request_notification(p_registration_id,
                                            coalesce(p_bypass_quiet_hours, false));
    PERFORM regnotify_staff.record_action(p_registration_id, 'send_now',
        pg_catalog.jsonb_build_object('bypass_quiet_hours', coalesce(p_bypass_quiet_hours, false),
                                      'queued', v_answer -> 'queued',
                                      'reason', v_answer -> 'reason'));
    RETURN v_answer;
END
$$;

-- FUNCTION regnotify_staff.silence_next(uuid)

CREATE FUNCTION regnotify_staff.silence_next(p_registration_id uuid) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path TO ''
    AS $$
BEGIN
    PERFORM regnotify_staff.require_admin();
    UPDATE public.registrations SET pending_notify_customer = false
    WHERE id = p_registration_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no registration %', p_registration_id USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM regnotify_staff.record_action(p_registration_id, 'silence_next', '{}'::jsonb);
    RETURN true;
END
$$;

-- TABLE public.coordination_slots

CREATE TABLE public.coordination_slots (
    name text NOT NULL,
    value double precision DEFAULT 0 NOT NULL,
    recent double precision[] DEFAULT '{}'::double precision[] NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL
);

-- TABLE public.customer_subjects

CREATE TABLE public.customer_subjects (
    phone text NOT NULL,
    subject uuid DEFAULT gen_random_uuid() NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    last_sign_in_at timestamp with time zone DEFAULT now() NOT NULL
);

-- TABLE public.inbound_messages

CREATE TABLE public.inbound_messages (
    id bigint NOT NULL,
    message_sid text NOT NULL,
    from_phone text NOT NULL,
    to_phone text,
    body text DEFAULT ''::text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL,
    registration_id uuid,
    keyword text,
    keyword_kind text,
    digest_id bigint,
    acknowledged_at timestamp with time zone,
    handled_at timestamp with time zone,
    CONSTRAINT inbound_messages_keyword_kind_check CHECK ((keyword_kind = ANY (ARRAY['opt_out'::text, 'opt_in'::text, 'help'::text])))
);

-- SEQUENCE public.inbound_messages_id_seq

ALTER TABLE public.inbound_messages ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.inbound_messages_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- TABLE public.notification_config

CREATE TABLE public.notification_config (
    id boolean DEFAULT true NOT NULL,
    debounce_window interval DEFAULT '00:05:00'::interval NOT NULL,
    max_wait interval DEFAULT '00:30:00'::interval NOT NULL,
    relay_url text,
    relay_token text,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    quiet_hours_start time without time zone DEFAULT '21:00:00'::time without time zone NOT NULL,
    quiet_hours_end time without time zone DEFAULT '08:00:00'::time without time zone NOT NULL,
    quiet_hours_channels text[] DEFAULT '{sms}'::text[] NOT NULL,
    default_time_zone text DEFAULT 'America/Chicago'::text NOT NULL,
    fallback_enabled boolean DEFAULT true NOT NULL,
    retain_processed_queue interval DEFAULT '30 days'::interval,
    retain_webhook_events interval DEFAULT '14 days'::interval,
    retain_cron_history interval DEFAULT '7 days'::interval,
    retain_deliveries interval,
    staff_email text,
    help_reply text,
    dealership_phone text,
    reply_ack_every interval DEFAULT '1 day'::interval,
    opt_out_keywords text[] DEFAULT '{STOP,STOPALL,UNSUBSCRIBE,CANCEL,END,QUIT,REVOKE,OPTOUT}'::text[] NOT NULL,
    opt_in_keywords text[] DEFAULT '{START,UNSTOP,YES}'::text[] NOT NULL,
    help_keywords text[] DEFAULT '{HELP,INFO}'::text[] NOT NULL,
    default_language text DEFAULT 'en'::text NOT NULL,
    staff_digest_hourly_cap integer DEFAULT 30,
    CONSTRAINT notification_config_debounce_window_check CHECK ((debounce_window >= '00:00:00'::interval)),
    CONSTRAINT notification_config_id_check CHECK (id),
    CONSTRAINT notification_config_max_wait_covers_window CHECK ((max_wait >= debounce_window)),
    CONSTRAINT notification_config_quiet_hours_channels_check CHECK ((quiet_hours_channels <@ ARRAY['sms'::text, 'email'::text])),
    CONSTRAINT notification_config_relay_url_check CHECK (((relay_url IS NULL) OR (relay_url ~ '^https?://'::text))),
    CONSTRAINT notification_config_reply_ack_every_positive CHECK ((reply_ack_every > '00:00:00'::interval)),
    CONSTRAINT notification_config_retention_positive CHECK (((COALESCE(retain_processed_queue, '1 day'::interval) >= '01:00:00'::interval) AND (COALESCE(retain_webhook_events, '1 day'::interval) >= '01:00:00'::interval) AND (COALESCE(retain_cron_history, '1 day'::interval) >= '01:00:00'::interval) AND (COALESCE(retain_deliveries, '1 day'::interval) >= '1 day'::interval))),
    CONSTRAINT notification_config_staff_digest_cap_positive CHECK (((staff_digest_hourly_cap IS NULL) OR (staff_digest_hourly_cap >= 1))),
    CONSTRAINT notification_config_staff_email_shape CHECK ((staff_email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'::text))
);

-- TABLE public.notification_languages

CREATE TABLE public.notification_languages (
    language text NOT NULL,
    name text NOT NULL,
    "position" smallint NOT NULL
);

-- TABLE public.notification_pref_changes

CREATE TABLE public.notification_pref_changes (
    id bigint NOT NULL,
    registration_id uuid NOT NULL,
    old_pref text,
    new_pref text NOT NULL,
    changed_by_kind text NOT NULL,
    changed_by text,
    changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT notification_pref_changes_changed_by_kind_check CHECK ((changed_by_kind = ANY (ARRAY['customer'::text, 'staff'::text, 'service'::text, 'database'::text])))
);

-- SEQUENCE public.notification_pref_changes_id_seq

ALTER TABLE public.notification_pref_changes ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.notification_pref_changes_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- TABLE public.notification_preferences

CREATE TABLE public.notification_preferences (
    pref text NOT NULL,
    channels text[] NOT NULL,
    "position" smallint NOT NULL
);

-- TABLE public.notification_queue

CREATE TABLE public.notification_queue (
    id bigint NOT NULL,
    registration_id uuid NOT NULL,
    old_stage text,
    new_stage text NOT NULL,
    send_after timestamp with time zone NOT NULL,
    sent boolean DEFAULT false NOT NULL,
    notify_customer boolean DEFAULT true NOT NULL,
    change_count integer DEFAULT 1 NOT NULL,
    closed_reason public.notification_closed_reason,
    processed_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    bypass_quiet_hours boolean DEFAULT false NOT NULL
);

-- SEQUENCE public.notification_queue_id_seq

ALTER TABLE public.notification_queue ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.notification_queue_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- TABLE public.notification_skip_reasons

CREATE TABLE public.notification_skip_reasons (
    reason text NOT NULL,
    meaning text NOT NULL
);

-- TABLE public.registration_notifications

CREATE TABLE public.registration_notifications (
    id bigint NOT NULL,
    registration_id uuid NOT NULL,
    channel text NOT NULL,
    recipient text,
    status text DEFAULT 'queued'::text NOT NULL,
    attempts integer DEFAULT 0 NOT NULL,
    error_code text,
    error_message text,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    sent_at timestamp with time zone,
    delivered_at timestamp with time zone,
    queue_id bigint,
    old_stage text,
    new_stage text,
    subject text,
    template_used text,
    provider_message_id text,
    provider text,
    body text,
    skip_reason text,
    outcome_unknown boolean DEFAULT false NOT NULL,
    last_attempt_at timestamp with time zone,
    next_attempt_at timestamp with time zone,
    lease_until timestamp with time zone,
    attempts_at_redrive integer DEFAULT 0 NOT NULL,
    email_batch_id text,
    parked boolean DEFAULT false NOT NULL,
    held_until timestamp with time zone,
    hold_reason text,
    hold_zone text,
    fallback_for bigint,
    email_batch_keyed_at timestamp with time zone,
    language text,
    handled_at timestamp with time zone,
    CONSTRAINT registration_notifications_channel_check CHECK ((channel = ANY (ARRAY['sms'::text, 'email'::text]))),
    CONSTRAINT registration_notifications_hold_reason_check CHECK ((hold_reason = 'quiet_hours'::text)),
    CONSTRAINT registration_notifications_status_check CHECK ((status = ANY (ARRAY['queued'::text, 'sending'::text, 'sent'::text, 'delivered'::text, 'undelivered'::text, 'failed'::text, 'bounced'::text, 'complained'::text, 'skipped'::text])))
);

-- SEQUENCE public.registration_notifications_id_seq

ALTER TABLE public.registration_notifications ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.registration_notifications_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- VIEW public.registration_replies

CREATE VIEW public.registration_replies WITH (security_invoker='true') AS
 SELECT m.registration_id,
    m.received_at AS at,
    'reply'::text AS event,
    m.keyword,
    m.keyword_kind,
    m.body,
    m.from_phone,
    m.message_sid,
    m.digest_id
   FROM public.inbound_messages m
  WHERE (m.registration_id IS NOT NULL);

-- TABLE public.registration_stages

CREATE TABLE public.registration_stages (
    stage text NOT NULL,
    "position" integer NOT NULL,
    label text NOT NULL,
    label_es text,
    CONSTRAINT registration_stages_stage_check CHECK ((stage ~ '^[a-z][a-z_]*$'::text))
);

-- TABLE public.registrations

CREATE TABLE public.registrations (
    id uuid DEFAULT gen_random_uuid() NOT NULL,
    customer_name text NOT NULL,
    customer_phone text,
    customer_email text,
    vin text,
    vehicle_year integer,
    vehicle_make text,
    vehicle_model text,
    plate_number text,
    current_stage text DEFAULT 'sale_complete'::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    notification_pref text DEFAULT 'both'::text NOT NULL,
    pending_notify_customer boolean,
    time_zone text,
    language text,
    stage_changed_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT registrations_customer_email_shape CHECK ((customer_email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'::text)),
    CONSTRAINT registrations_customer_name_check CHECK ((length(btrim(customer_name)) > 0)),
    CONSTRAINT registrations_customer_phone_e164 CHECK ((customer_phone ~ '^\+[1-9][0-9]{6,14}$'::text)),
    CONSTRAINT registrations_vehicle_year_check CHECK (((vehicle_year >= 1900) AND (vehicle_year <= 2100)))
);

-- TABLE public.reply_digests

CREATE TABLE public.reply_digests (
    id bigint NOT NULL,
    from_phone text NOT NULL,
    registration_id uuid,
    first_at timestamp with time zone DEFAULT now() NOT NULL,
    send_after timestamp with time zone NOT NULL,
    reply_count integer DEFAULT 1 NOT NULL,
    status text DEFAULT 'pending'::text NOT NULL,
    recipient text,
    attempts integer DEFAULT 0 NOT NULL,
    lease_until timestamp with time zone,
    claim_token text,
    provider_message_id text,
    error_code text,
    error_message text,
    sent_at timestamp with time zone,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    claimed_at timestamp with time zone,
    in_summary boolean DEFAULT false NOT NULL,
    idempotency_key text,
    CONSTRAINT reply_digests_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'sending'::text, 'sent'::text, 'failed'::text])))
);

-- SEQUENCE public.reply_digests_id_seq

ALTER TABLE public.reply_digests ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.reply_digests_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- TABLE public.seen_message_sids

CREATE TABLE public.seen_message_sids (
    sid_digest bytea NOT NULL,
    seen_on date DEFAULT CURRENT_DATE NOT NULL,
    CONSTRAINT seen_message_sids_sid_digest_check CHECK ((length(sid_digest) = 16))
);

-- TABLE public.sms_opt_outs

CREATE TABLE public.sms_opt_outs (
    phone text NOT NULL,
    opted_out boolean DEFAULT true NOT NULL,
    source text NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT sms_opt_outs_phone_check CHECK ((phone ~ '^\+[1-9][0-9]{6,14}$'::text))
);

-- TABLE public.staff_actions

CREATE TABLE public.staff_actions (
    id bigint NOT NULL,
    registration_id uuid,
    actor_email text,
    actor_sub text,
    action text NOT NULL,
    detail jsonb DEFAULT '{}'::jsonb NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT staff_actions_action_check CHECK ((action = ANY (ARRAY['send_now'::text, 'silence_next'::text, 'resend'::text, 'mark_handled'::text])))
);

-- SEQUENCE public.staff_actions_id_seq

ALTER TABLE public.staff_actions ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.staff_actions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- TABLE public.staff_members

CREATE TABLE public.staff_members (
    id bigint NOT NULL,
    email text NOT NULL,
    name text NOT NULL,
    active boolean DEFAULT true NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    removed_at timestamp with time zone,
    CONSTRAINT staff_members_email_lower CHECK ((email = lower(email))),
    CONSTRAINT staff_members_email_shape CHECK ((email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$'::text)),
    CONSTRAINT staff_members_name_check CHECK ((length(btrim(name)) > 0))
);

-- SEQUENCE public.staff_members_id_seq

ALTER TABLE public.staff_members ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.staff_members_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- TABLE public.staff_sign_in_codes

CREATE TABLE public.staff_sign_in_codes (
    key bytea NOT NULL,
    digest bytea NOT NULL,
    expires_at timestamp with time zone NOT NULL
);

-- TABLE public.webhook_events

CREATE TABLE public.webhook_events (
    provider text NOT NULL,
    event_id text NOT NULL,
    received_at timestamp with time zone DEFAULT now() NOT NULL
);

-- TABLE regnotify.baseline

CREATE TABLE regnotify.baseline (
    key text NOT NULL
);

-- TABLE regnotify.history

CREATE TABLE regnotify.history (
    id bigint NOT NULL,
    filename text NOT NULL,
    action text NOT NULL,
    at timestamp with time zone DEFAULT now() NOT NULL,
    by_role text DEFAULT CURRENT_USER NOT NULL,
    CONSTRAINT history_action_check CHECK ((action = ANY (ARRAY['apply'::text, 'undo'::text])))
);

-- SEQUENCE regnotify.history_id_seq

ALTER TABLE regnotify.history ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME regnotify.history_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- TABLE regnotify.migrations

CREATE TABLE regnotify.migrations (
    filename text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);

-- TABLE regnotify.objects

CREATE TABLE regnotify.objects (
    seq bigint NOT NULL,
    filename text NOT NULL,
    key text NOT NULL,
    state text NOT NULL,
    value text DEFAULT ''::text NOT NULL,
    CONSTRAINT objects_state_check CHECK ((state = ANY (ARRAY['created'::text, 'original'::text])))
);

-- SEQUENCE regnotify.objects_seq_seq

ALTER TABLE regnotify.objects ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME regnotify.objects_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

-- CONSTRAINT public.coordination_slots coordination_slots_pkey

ALTER TABLE ONLY public.coordination_slots
    ADD CONSTRAINT coordination_slots_pkey PRIMARY KEY (name);

-- CONSTRAINT public.customer_subjects customer_subjects_pkey

ALTER TABLE ONLY public.customer_subjects
    ADD CONSTRAINT customer_subjects_pkey PRIMARY KEY (phone);

-- CONSTRAINT public.customer_subjects customer_subjects_subject_key

ALTER TABLE ONLY public.customer_subjects
    ADD CONSTRAINT customer_subjects_subject_key UNIQUE (subject);

-- CONSTRAINT public.inbound_messages inbound_messages_pkey

ALTER TABLE ONLY public.inbound_messages
    ADD CONSTRAINT inbound_messages_pkey PRIMARY KEY (id);

-- CONSTRAINT public.notification_config notification_config_pkey

ALTER TABLE ONLY public.notification_config
    ADD CONSTRAINT notification_config_pkey PRIMARY KEY (id);

-- CONSTRAINT public.notification_languages notification_languages_pkey

ALTER TABLE ONLY public.notification_languages
    ADD CONSTRAINT notification_languages_pkey PRIMARY KEY (language);

-- CONSTRAINT public.notification_pref_changes notification_pref_changes_pkey

ALTER TABLE ONLY public.notification_pref_changes
    ADD CONSTRAINT notification_pref_changes_pkey PRIMARY KEY (id);

-- CONSTRAINT public.notification_preferences notification_preferences_pkey

ALTER TABLE ONLY public.notification_preferences
    ADD CONSTRAINT notification_preferences_pkey PRIMARY KEY (pref);

-- CONSTRAINT public.notification_queue notification_queue_pkey

ALTER TABLE ONLY public.notification_queue
    ADD CONSTRAINT notification_queue_pkey PRIMARY KEY (id);

-- CONSTRAINT public.notification_skip_reasons notification_skip_reasons_pkey

ALTER TABLE ONLY public.notification_skip_reasons
    ADD CONSTRAINT notification_skip_reasons_pkey PRIMARY KEY (reason);

-- CONSTRAINT public.registration_notifications registration_notifications_pkey

ALTER TABLE ONLY public.registration_notifications
    ADD CONSTRAINT registration_notifications_pkey PRIMARY KEY (id);

-- CONSTRAINT public.registration_stages registration_stages_pkey

ALTER TABLE ONLY public.registration_stages
    ADD CONSTRAINT registration_stages_pkey PRIMARY KEY (stage);

-- CONSTRAINT public.registrations registrations_pkey

ALTER TABLE ONLY public.registrations
    ADD CONSTRAINT registrations_pkey PRIMARY KEY (id);

-- CONSTRAINT public.reply_digests reply_digests_pkey

ALTER TABLE ONLY public.reply_digests
    ADD CONSTRAINT reply_digests_pkey PRIMARY KEY (id);

-- CONSTRAINT public.seen_message_sids seen_message_sids_pkey

ALTER TABLE ONLY public.seen_message_sids
    ADD CONSTRAINT seen_message_sids_pkey PRIMARY KEY (sid_digest);

-- CONSTRAINT public.sms_opt_outs sms_opt_outs_pkey

ALTER TABLE ONLY public.sms_opt_outs
    ADD CONSTRAINT sms_opt_outs_pkey PRIMARY KEY (phone);

-- CONSTRAINT public.staff_actions staff_actions_pkey

ALTER TABLE ONLY public.staff_actions
    ADD CONSTRAINT staff_actions_pkey PRIMARY KEY (id);

-- CONSTRAINT public.staff_members staff_members_email_key

ALTER TABLE ONLY public.staff_members
    ADD CONSTRAINT staff_members_email_key UNIQUE (email);

-- CONSTRAINT public.staff_members staff_members_pkey

ALTER TABLE ONLY public.staff_members
    ADD CONSTRAINT staff_members_pkey PRIMARY KEY (id);

-- CONSTRAINT public.staff_sign_in_codes staff_sign_in_codes_pkey

ALTER TABLE ONLY public.staff_sign_in_codes
    ADD CONSTRAINT staff_sign_in_codes_pkey PRIMARY KEY (key);

-- CONSTRAINT public.inbound_messages uq_inbound_messages_message_sid

ALTER TABLE ONLY public.inbound_messages
    ADD CONSTRAINT uq_inbound_messages_message_sid UNIQUE (message_sid);

-- CONSTRAINT public.registration_notifications uq_registration_notifications_queue_channel

ALTER TABLE ONLY public.registration_notifications
    ADD CONSTRAINT uq_registration_notifications_queue_channel UNIQUE (queue_id, channel);

-- CONSTRAINT public.webhook_events webhook_events_pkey

ALTER TABLE ONLY public.webhook_events
    ADD CONSTRAINT webhook_events_pkey PRIMARY KEY (provider, event_id);

-- CONSTRAINT regnotify.baseline baseline_pkey

ALTER TABLE ONLY regnotify.baseline
    ADD CONSTRAINT baseline_pkey PRIMARY KEY (key);

-- CONSTRAINT regnotify.history history_pkey

ALTER TABLE ONLY regnotify.history
    ADD CONSTRAINT history_pkey PRIMARY KEY (id);

-- CONSTRAINT regnotify.migrations migrations_pkey

ALTER TABLE ONLY regnotify.migrations
    ADD CONSTRAINT migrations_pkey PRIMARY KEY (filename);

-- CONSTRAINT regnotify.objects objects_pkey

ALTER TABLE ONLY regnotify.objects
    ADD CONSTRAINT objects_pkey PRIMARY KEY (seq);

-- INDEX public.ix_inbound_messages_digest

CREATE INDEX ix_inbound_messages_digest ON public.inbound_messages USING btree (digest_id) WHERE (digest_id IS NOT NULL);

-- INDEX public.ix_inbound_messages_from_phone

CREATE INDEX ix_inbound_messages_from_phone ON public.inbound_messages USING btree (from_phone, received_at);

-- INDEX public.ix_inbound_messages_received_at

CREATE INDEX ix_inbound_messages_received_at ON public.inbound_messages USING btree (received_at);

-- INDEX public.ix_inbound_messages_registration

CREATE INDEX ix_inbound_messages_registration ON public.inbound_messages USING btree (registration_id, received_at);

-- INDEX public.ix_inbound_messages_unhandled

CREATE INDEX ix_inbound_messages_unhandled ON public.inbound_messages USING btree (received_at, id) WHERE ((handled_at IS NULL) AND (keyword_kind IS NULL));

-- INDEX public.ix_notification_pref_changes_registration

CREATE INDEX ix_notification_pref_changes_registration ON public.notification_pref_changes USING btree (registration_id, changed_at);

-- INDEX public.ix_notification_queue_due

CREATE INDEX ix_notification_queue_due ON public.notification_queue USING btree (send_after) WHERE (sent = false);

-- INDEX public.ix_notification_queue_processed

CREATE INDEX ix_notification_queue_processed ON public.notification_queue USING btree (COALESCE(processed_at, updated_at)) WHERE sent;

-- INDEX public.ix_notification_queue_registration

CREATE INDEX ix_notification_queue_registration ON public.notification_queue USING btree (registration_id, created_at);

-- INDEX public.ix_registration_notifications_attention

CREATE INDEX ix_registration_notifications_attention ON public.registration_notifications USING btree (created_at, id) WHERE ((handled_at IS NULL) AND ((status = ANY (ARRAY['failed'::text, 'bounced'::text, 'complained'::text])) OR (skip_reason = 'opted_out'::text)));

-- INDEX public.ix_registration_notifications_created

CREATE INDEX ix_registration_notifications_created ON public.registration_notifications USING btree (created_at, id);

-- INDEX public.ix_registration_notifications_email_batch

CREATE INDEX ix_registration_notifications_email_batch ON public.registration_notifications USING btree (email_batch_id) WHERE (email_batch_id IS NOT NULL);

-- INDEX public.ix_registration_notifications_held

CREATE INDEX ix_registration_notifications_held ON public.registration_notifications USING btree (held_until) WHERE (hold_reason IS NOT NULL);

-- INDEX public.ix_registration_notifications_held_registration

CREATE INDEX ix_registration_notifications_held_registration ON public.registration_notifications USING btree (registration_id, channel) WHERE (hold_reason IS NOT NULL);

-- INDEX public.ix_registration_notifications_in_flight

CREATE INDEX ix_registration_notifications_in_flight ON public.registration_notifications USING btree (updated_at) WHERE (status = ANY (ARRAY['queued'::text, 'sending'::text]));

-- INDEX public.ix_registration_notifications_outcome_unknown

CREATE INDEX ix_registration_notifications_outcome_unknown ON public.registration_notifications USING btree (channel) WHERE ((status = 'failed'::text) AND outcome_unknown);

-- INDEX public.ix_registration_notifications_parked

CREATE INDEX ix_registration_notifications_parked ON public.registration_notifications USING btree (next_attempt_at) WHERE parked;

-- INDEX public.ix_registration_notifications_provider_message_id

CREATE INDEX ix_registration_notifications_provider_message_id ON public.registration_notifications USING btree (provider_message_id) WHERE (provider_message_id IS NOT NULL);

-- INDEX public.ix_registration_notifications_registration

CREATE INDEX ix_registration_notifications_registration ON public.registration_notifications USING btree (registration_id, created_at);

-- INDEX public.ix_registration_notifications_status_created

CREATE INDEX ix_registration_notifications_status_created ON public.registration_notifications USING btree (status, created_at, id);

-- INDEX public.ix_registrations_customer_email_lower

CREATE INDEX ix_registrations_customer_email_lower ON public.registrations USING btree (lower(customer_email));

-- INDEX public.ix_registrations_customer_name_words

CREATE INDEX ix_registrations_customer_name_words ON public.registrations USING gin (to_tsvector('simple'::regconfig, customer_name));

-- INDEX public.ix_registrations_customer_phone

CREATE INDEX ix_registrations_customer_phone ON public.registrations USING btree (customer_phone);

-- INDEX public.ix_registrations_vin_upper

CREATE INDEX ix_registrations_vin_upper ON public.registrations USING btree (upper(vin) text_pattern_ops);

-- INDEX public.ix_reply_digests_claimed

CREATE INDEX ix_reply_digests_claimed ON public.reply_digests USING btree (claimed_at) WHERE (claimed_at IS NOT NULL);

-- INDEX public.ix_reply_digests_open

CREATE INDEX ix_reply_digests_open ON public.reply_digests USING btree (send_after) WHERE (status = ANY (ARRAY['pending'::text, 'sending'::text]));

-- INDEX public.ix_staff_actions_delivery

CREATE INDEX ix_staff_actions_delivery ON public.staff_actions USING btree (((detail ->> 'delivery_id'::text)), at) WHERE (action = 'resend'::text);

-- INDEX public.ix_staff_actions_item

CREATE INDEX ix_staff_actions_item ON public.staff_actions USING btree (action, ((detail ->> 'kind'::text)), ((detail ->> 'id'::text)), at);

-- INDEX public.ix_staff_actions_registration

CREATE INDEX ix_staff_actions_registration ON public.staff_actions USING btree (registration_id, at);

-- INDEX public.ix_webhook_events_received_at

CREATE INDEX ix_webhook_events_received_at ON public.webhook_events USING btree (received_at);

-- INDEX public.uq_pending_notification

CREATE UNIQUE INDEX uq_pending_notification ON public.notification_queue USING btree (registration_id) WHERE (sent = false);

-- INDEX public.uq_registration_notifications_fallback_for

CREATE UNIQUE INDEX uq_registration_notifications_fallback_for ON public.registration_notifications USING btree (fallback_for) WHERE (fallback_for IS NOT NULL);

-- INDEX public.uq_reply_digests_pending

CREATE UNIQUE INDEX uq_reply_digests_pending ON public.reply_digests USING btree (from_phone) WHERE (status = 'pending'::text);

-- INDEX regnotify.ix_objects_filename

CREATE INDEX ix_objects_filename ON regnotify.objects USING btree (filename);

-- INDEX regnotify.ix_objects_key

CREATE INDEX ix_objects_key ON regnotify.objects USING btree (key);

-- TRIGGER public.registrations registrations_customer_guard

CREATE TRIGGER registrations_customer_guard BEFORE UPDATE ON public.registrations FOR EACH ROW WHEN (((CURRENT_USER = 'authenticated'::name) OR (old.notification_pref IS DISTINCT FROM new.notification_pref) OR (old.language IS DISTINCT FROM new.language))) EXECUTE FUNCTION public.registrations_customer_guard();

-- TRIGGER public.registrations registrations_pref_audit

CREATE TRIGGER registrations_pref_audit AFTER UPDATE OF notification_pref ON public.registrations FOR EACH ROW WHEN ((old.notification_pref IS DISTINCT FROM new.notification_pref)) EXECUTE FUNCTION public.record_notification_pref_change();

-- TRIGGER public.notification_config regnotify_check_vocabulary

CREATE TRIGGER regnotify_check_vocabulary BEFORE INSERT OR UPDATE OF default_language ON public.notification_config FOR EACH ROW EXECUTE FUNCTION public.regnotify_check_vocabulary('default_language');

-- TRIGGER public.registrations regnotify_check_vocabulary

CREATE TRIGGER regnotify_check_vocabulary BEFORE INSERT OR UPDATE OF notification_pref, language ON public.registrations FOR EACH ROW EXECUTE FUNCTION public.regnotify_check_vocabulary('notification_pref', 'language');

-- TRIGGER public.notification_config trg_check_default_time_zone

CREATE TRIGGER trg_check_default_time_zone BEFORE INSERT OR UPDATE OF default_time_zone ON public.notification_config FOR EACH ROW EXECUTE FUNCTION public.check_time_zone_name('default_time_zone');

-- TRIGGER public.registrations trg_check_time_zone_insert

CREATE TRIGGER trg_check_time_zone_insert BEFORE INSERT ON public.registrations FOR EACH ROW WHEN ((new.time_zone IS NOT NULL)) EXECUTE FUNCTION public.check_time_zone_name('time_zone');

-- TRIGGER public.registrations trg_check_time_zone_update

CREATE TRIGGER trg_check_time_zone_update BEFORE UPDATE OF time_zone ON public.registrations FOR EACH ROW WHEN (((new.time_zone IS DISTINCT FROM old.time_zone) AND (new.time_zone IS NOT NULL))) EXECUTE FUNCTION public.check_time_zone_name('time_zone');

-- TRIGGER public.notification_config trg_notification_config_recompile

CREATE TRIGGER trg_notification_config_recompile AFTER INSERT OR DELETE OR UPDATE OF debounce_window, max_wait ON public.notification_config FOR EACH ROW EXECUTE FUNCTION public.notification_config_recompile();

-- TRIGGER public.notification_config trg_notification_config_recompile_truncate

CREATE TRIGGER trg_notification_config_recompile_truncate AFTER TRUNCATE ON public.notification_config FOR EACH STATEMENT EXECUTE FUNCTION public.notification_config_recompile();

-- TRIGGER public.registrations trg_queue_status_notification

CREATE TRIGGER trg_queue_status_notification BEFORE UPDATE OF current_stage ON public.registrations FOR EACH ROW EXECUTE FUNCTION public.queue_status_notification();

-- FK CONSTRAINT public.inbound_messages inbound_messages_digest_id_fkey

ALTER TABLE ONLY public.inbound_messages
    ADD CONSTRAINT inbound_messages_digest_id_fkey FOREIGN KEY (digest_id) REFERENCES public.reply_digests(id) ON DELETE SET NULL;

-- FK CONSTRAINT public.inbound_messages inbound_messages_registration_id_fkey

ALTER TABLE ONLY public.inbound_messages
    ADD CONSTRAINT inbound_messages_registration_id_fkey FOREIGN KEY (registration_id) REFERENCES public.registrations(id) ON DELETE SET NULL;

-- FK CONSTRAINT public.notification_config notification_config_default_language_fkey

ALTER TABLE ONLY public.notification_config
    ADD CONSTRAINT notification_config_default_language_fkey FOREIGN KEY (default_language) REFERENCES public.notification_languages(language);

-- FK CONSTRAINT public.notification_pref_changes notification_pref_changes_registration_id_fkey

ALTER TABLE ONLY public.notification_pref_changes
    ADD CONSTRAINT notification_pref_changes_registration_id_fkey FOREIGN KEY (registration_id) REFERENCES public.registrations(id) ON DELETE CASCADE;

-- FK CONSTRAINT public.notification_queue notification_queue_registration_id_fkey

ALTER TABLE ONLY public.notification_queue
    ADD CONSTRAINT notification_queue_registration_id_fkey FOREIGN KEY (registration_id) REFERENCES public.registrations(id) ON DELETE CASCADE;

-- FK CONSTRAINT public.registration_notifications registration_notifications_fallback_for_fkey

ALTER TABLE ONLY public.registration_notifications
    ADD CONSTRAINT registration_notifications_fallback_for_fkey FOREIGN KEY (fallback_for) REFERENCES public.registration_notifications(id) ON DELETE SET NULL;

-- FK CONSTRAINT public.registration_notifications registration_notifications_language_fkey

ALTER TABLE ONLY public.registration_notifications
    ADD CONSTRAINT registration_notifications_language_fkey FOREIGN KEY (language) REFERENCES public.notification_languages(language);

-- FK CONSTRAINT public.registration_notifications registration_notifications_registration_id_fkey

ALTER TABLE ONLY public.registration_notifications
    ADD CONSTRAINT registration_notifications_registration_id_fkey FOREIGN KEY (registration_id) REFERENCES public.registrations(id) ON DELETE CASCADE;

-- FK CONSTRAINT public.registration_notifications registration_notifications_skip_reason_fkey

ALTER TABLE ONLY public.registration_notifications
    ADD CONSTRAINT registration_notifications_skip_reason_fkey FOREIGN KEY (skip_reason) REFERENCES public.notification_skip_reasons(reason);

-- FK CONSTRAINT public.registrations registrations_current_stage_fkey

ALTER TABLE ONLY public.registrations
    ADD CONSTRAINT registrations_current_stage_fkey FOREIGN KEY (current_stage) REFERENCES public.registration_stages(stage);

-- FK CONSTRAINT public.registrations registrations_language_fkey

ALTER TABLE ONLY public.registrations
    ADD CONSTRAINT registrations_language_fkey FOREIGN KEY (language) REFERENCES public.notification_languages(language);

-- FK CONSTRAINT public.registrations registrations_notification_pref_fkey

ALTER TABLE ONLY public.registrations
    ADD CONSTRAINT registrations_notification_pref_fkey FOREIGN KEY (notification_pref) REFERENCES public.notification_preferences(pref);

-- FK CONSTRAINT public.reply_digests reply_digests_registration_id_fkey

ALTER TABLE ONLY public.reply_digests
    ADD CONSTRAINT reply_digests_registration_id_fkey FOREIGN KEY (registration_id) REFERENCES public.registrations(id) ON DELETE SET NULL;

-- FK CONSTRAINT public.staff_actions staff_actions_registration_id_fkey

ALTER TABLE ONLY public.staff_actions
    ADD CONSTRAINT staff_actions_registration_id_fkey FOREIGN KEY (registration_id) REFERENCES public.registrations(id) ON DELETE CASCADE;

-- POLICY public.notification_queue admin_deletes

CREATE POLICY admin_deletes ON public.notification_queue FOR DELETE TO authenticated USING (( SELECT public.jwt_is_admin() AS jwt_is_admin));

-- POLICY public.registrations admin_deletes

CREATE POLICY admin_deletes ON public.registrations FOR DELETE TO authenticated USING (( SELECT public.jwt_is_admin() AS jwt_is_admin));

-- POLICY public.notification_queue admin_inserts

CREATE POLICY admin_inserts ON public.notification_queue FOR INSERT TO authenticated WITH CHECK (( SELECT public.jwt_is_admin() AS jwt_is_admin));

-- POLICY public.registrations admin_inserts

CREATE POLICY admin_inserts ON public.registrations FOR INSERT TO authenticated WITH CHECK (( SELECT public.jwt_is_admin() AS jwt_is_admin));

-- POLICY public.staff_actions admin_reads

CREATE POLICY admin_reads ON public.staff_actions FOR SELECT TO authenticated USING (( SELECT public.jwt_is_admin() AS jwt_is_admin));

-- POLICY public.notification_config admin_reads_quiet_hours

CREATE POLICY admin_reads_quiet_hours ON public.notification_config FOR SELECT TO authenticated USING (( SELECT public.jwt_is_admin() AS jwt_is_admin));

-- POLICY public.notification_queue admin_updates

CREATE POLICY admin_updates ON public.notification_queue FOR UPDATE TO authenticated USING (( SELECT public.jwt_is_admin() AS jwt_is_admin)) WITH CHECK (( SELECT public.jwt_is_admin() AS jwt_is_admin));

-- POLICY public.inbound_messages authenticated_select

CREATE POLICY authenticated_select ON public.inbound_messages FOR SELECT TO authenticated USING ((( SELECT public.jwt_is_admin() AS jwt_is_admin) OR ((from_phone = ( SELECT public.jwt_customer_phone() AS jwt_customer_phone)) AND (EXISTS ( SELECT 1
   FROM public.registrations r
  WHERE ((r.id = inbound_messages.registration_id) AND (r.customer_phone = inbound_messages.from_phone)))))));

-- POLICY public.notification_pref_changes authenticated_select

CREATE POLICY authenticated_select ON public.notification_pref_changes FOR SELECT TO authenticated USING ((( SELECT public.jwt_is_admin() AS jwt_is_admin) OR (EXISTS ( SELECT 1
   FROM public.registrations r
  WHERE ((r.id = notification_pref_changes.registration_id) AND (r.customer_phone = ( SELECT public.jwt_customer_phone() AS jwt_customer_phone)))))));

-- POLICY public.notification_queue authenticated_select

CREATE POLICY authenticated_select ON public.notification_queue FOR SELECT TO authenticated USING ((( SELECT public.jwt_is_admin() AS jwt_is_admin) OR (EXISTS ( SELECT 1
   FROM public.registrations r
  WHERE ((r.id = notification_queue.registration_id) AND (r.customer_phone = ( SELECT public.jwt_customer_phone() AS jwt_customer_phone)))))));

-- POLICY public.registration_notifications authenticated_select

CREATE POLICY authenticated_select ON public.registration_notifications FOR SELECT TO authenticated USING ((( SELECT public.jwt_is_admin() AS jwt_is_admin) OR (EXISTS ( SELECT 1
   FROM public.registrations r
  WHERE ((r.id = registration_notifications.registration_id) AND (r.customer_phone = ( SELECT public.jwt_customer_phone() AS jwt_customer_phone)) AND ((registration_notifications.recipient IS NULL) OR ((registration_notifications.channel = 'sms'::text) AND (registration_notifications.recipient = r.customer_phone)) OR ((registration_notifications.channel = 'email'::text) AND (lower(registration_notifications.recipient) = lower(r.customer_email)))))))));

-- POLICY public.registrations authenticated_select

CREATE POLICY authenticated_select ON public.registrations FOR SELECT TO authenticated USING ((( SELECT public.jwt_is_admin() AS jwt_is_admin) OR (customer_phone = ( SELECT public.jwt_customer_phone() AS jwt_customer_phone))));

-- POLICY public.sms_opt_outs authenticated_select

CREATE POLICY authenticated_select ON public.sms_opt_outs FOR SELECT TO authenticated USING ((( SELECT public.jwt_is_admin() AS jwt_is_admin) OR (phone = ( SELECT public.jwt_customer_phone() AS jwt_customer_phone))));

-- POLICY public.registrations authenticated_update

CREATE POLICY authenticated_update ON public.registrations FOR UPDATE TO authenticated USING ((( SELECT public.jwt_is_admin() AS jwt_is_admin) OR (customer_phone = ( SELECT public.jwt_customer_phone() AS jwt_customer_phone)))) WITH CHECK ((( SELECT public.jwt_is_admin() AS jwt_is_admin) OR (customer_phone = ( SELECT public.jwt_customer_phone() AS jwt_customer_phone))));

-- ROW SECURITY public.coordination_slots

ALTER TABLE public.coordination_slots ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.customer_subjects

ALTER TABLE public.customer_subjects ENABLE ROW LEVEL SECURITY;

-- POLICY public.registration_stages everyone_reads_stages

CREATE POLICY everyone_reads_stages ON public.registration_stages FOR SELECT TO anon, authenticated, service_role USING (true);

-- ROW SECURITY public.inbound_messages

ALTER TABLE public.inbound_messages ENABLE ROW LEVEL SECURITY;

-- POLICY public.staff_members member_reads_own_row

CREATE POLICY member_reads_own_row ON public.staff_members FOR SELECT TO authenticated USING ((email = lower(NULLIF((auth.jwt() ->> 'email'::text), ''::text))));

-- ROW SECURITY public.notification_config

ALTER TABLE public.notification_config ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.notification_languages

ALTER TABLE public.notification_languages ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.notification_pref_changes

ALTER TABLE public.notification_pref_changes ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.notification_preferences

ALTER TABLE public.notification_preferences ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.notification_queue

ALTER TABLE public.notification_queue ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.notification_skip_reasons

ALTER TABLE public.notification_skip_reasons ENABLE ROW LEVEL SECURITY;

-- POLICY public.notification_languages readable

CREATE POLICY readable ON public.notification_languages FOR SELECT TO authenticated, service_role USING (true);

-- POLICY public.notification_preferences readable

CREATE POLICY readable ON public.notification_preferences FOR SELECT TO authenticated, service_role USING (true);

-- POLICY public.notification_skip_reasons readable

CREATE POLICY readable ON public.notification_skip_reasons FOR SELECT TO authenticated, service_role USING (true);

-- ROW SECURITY public.registration_notifications

ALTER TABLE public.registration_notifications ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.registration_stages

ALTER TABLE public.registration_stages ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.registrations

ALTER TABLE public.registrations ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.reply_digests

ALTER TABLE public.reply_digests ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.seen_message_sids

ALTER TABLE public.seen_message_sids ENABLE ROW LEVEL SECURITY;

-- POLICY public.coordination_slots service_role_all

CREATE POLICY service_role_all ON public.coordination_slots TO service_role USING (true) WITH CHECK (true);

-- POLICY public.inbound_messages service_role_all

CREATE POLICY service_role_all ON public.inbound_messages TO service_role USING (true) WITH CHECK (true);

-- POLICY public.notification_config service_role_all

CREATE POLICY service_role_all ON public.notification_config TO service_role USING (true) WITH CHECK (true);

-- POLICY public.notification_queue service_role_all

CREATE POLICY service_role_all ON public.notification_queue TO service_role USING (true) WITH CHECK (true);

-- POLICY public.registration_notifications service_role_all

CREATE POLICY service_role_all ON public.registration_notifications TO service_role USING (true) WITH CHECK (true);

-- POLICY public.registrations service_role_all

CREATE POLICY service_role_all ON public.registrations TO service_role USING (true) WITH CHECK (true);

-- POLICY public.reply_digests service_role_all

CREATE POLICY service_role_all ON public.reply_digests TO service_role USING (true) WITH CHECK (true);

-- POLICY public.sms_opt_outs service_role_all

CREATE POLICY service_role_all ON public.sms_opt_outs TO service_role USING (true) WITH CHECK (true);

-- POLICY public.webhook_events service_role_all

CREATE POLICY service_role_all ON public.webhook_events TO service_role USING (true) WITH CHECK (true);

-- POLICY public.notification_pref_changes service_role_reads

CREATE POLICY service_role_reads ON public.notification_pref_changes FOR SELECT TO service_role USING (true);

-- POLICY public.staff_actions service_role_reads

CREATE POLICY service_role_reads ON public.staff_actions FOR SELECT TO service_role USING (true);

-- ROW SECURITY public.sms_opt_outs

ALTER TABLE public.sms_opt_outs ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.staff_actions

ALTER TABLE public.staff_actions ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.staff_members

ALTER TABLE public.staff_members ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.staff_sign_in_codes

ALTER TABLE public.staff_sign_in_codes ENABLE ROW LEVEL SECURITY;

-- ROW SECURITY public.webhook_events

ALTER TABLE public.webhook_events ENABLE ROW LEVEL SECURITY;

-- ACL SCHEMA auth

GRANT USAGE ON SCHEMA auth TO anon;
GRANT USAGE ON SCHEMA auth TO authenticated;
GRANT USAGE ON SCHEMA auth TO service_role;

-- ACL SCHEMA public

GRANT USAGE ON SCHEMA public TO anon;
GRANT USAGE ON SCHEMA public TO authenticated;
GRANT USAGE ON SCHEMA public TO service_role;

-- ACL SCHEMA regnotify_staff

GRANT USAGE ON SCHEMA regnotify_staff TO authenticated;

-- ACL FUNCTION auth.jwt()

GRANT ALL ON FUNCTION auth.jwt() TO anon;
GRANT ALL ON FUNCTION auth.jwt() TO authenticated;
GRANT ALL ON FUNCTION auth.jwt() TO service_role;

-- ACL FUNCTION public.check_time_zone_name()

REVOKE ALL ON FUNCTION public.check_time_zone_name() FROM PUBLIC;

-- ACL FUNCTION public.compile_queue_status_notification()

REVOKE ALL ON FUNCTION public.compile_queue_status_notification() FROM PUBLIC;

-- ACL FUNCTION public.jwt_customer_phone()

REVOKE ALL ON FUNCTION public.jwt_customer_phone() FROM PUBLIC;
GRANT ALL ON FUNCTION public.jwt_customer_phone() TO authenticated;

-- ACL FUNCTION public.jwt_is_admin()

REVOKE ALL ON FUNCTION public.jwt_is_admin() FROM PUBLIC;
GRANT ALL ON FUNCTION public.jwt_is_admin() TO authenticated;

-- ACL FUNCTION public.notification_config_recompile()

REVOKE ALL ON FUNCTION public.notification_config_recompile() FROM PUBLIC;

-- ACL FUNCTION public.notification_tick()

REVOKE ALL ON FUNCTION public.notification_tick() FROM PUBLIC;
GRANT ALL ON FUNCTION public.notification_tick() TO service_role;

-- ACL FUNCTION public.notification_timeline(p_registration_id uuid)

REVOKE ALL ON FUNCTION public.notification_timeline(p_registration_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.notification_timeline(p_registration_id uuid) TO authenticated;
GRANT ALL ON FUNCTION public.notification_timeline(p_registration_id uuid) TO service_role;

-- ACL FUNCTION public.prune_notifications(batch_size integer)

REVOKE ALL ON FUNCTION public.prune_notifications(batch_size integer) FROM PUBLIC;

-- ACL FUNCTION public.prune_notifications_preview()

REVOKE ALL ON FUNCTION public.prune_notifications_preview() FROM PUBLIC;

-- ACL FUNCTION public.queue_status_notification()

REVOKE ALL ON FUNCTION public.queue_status_notification() FROM PUBLIC;

-- ACL FUNCTION public.quiet_hours_release_at(p_at timestamp with time zone, p_zone text, p_start time without time zone, p_end time without time zone)

REVOKE ALL ON FUNCTION public.quiet_hours_release_at(p_at timestamp with time zone, p_zone text, p_start time without time zone, p_end time without time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.quiet_hours_release_at(p_at timestamp with time zone, p_zone text, p_start time without time zone, p_end time without time zone) TO service_role;
GRANT ALL ON FUNCTION public.quiet_hours_release_at(p_at timestamp with time zone, p_zone text, p_start time without time zone, p_end time without time zone) TO authenticated;

-- ACL FUNCTION public.quiet_hours_release_now(p_zone text, p_start time without time zone, p_end time without time zone)

REVOKE ALL ON FUNCTION public.quiet_hours_release_now(p_zone text, p_start time without time zone, p_end time without time zone) FROM PUBLIC;
GRANT ALL ON FUNCTION public.quiet_hours_release_now(p_zone text, p_start time without time zone, p_end time without time zone) TO service_role;

-- ACL FUNCTION public.record_notification_pref_change()

REVOKE ALL ON FUNCTION public.record_notification_pref_change() FROM PUBLIC;

-- ACL FUNCTION public.registrations_customer_guard()

REVOKE ALL ON FUNCTION public.registrations_customer_guard() FROM PUBLIC;

-- ACL FUNCTION public.regnotify_check_vocabulary()

REVOKE ALL ON FUNCTION public.regnotify_check_vocabulary() FROM PUBLIC;
GRANT ALL ON FUNCTION public.regnotify_check_vocabulary() TO authenticated;
GRANT ALL ON FUNCTION public.regnotify_check_vocabulary() TO service_role;

-- ACL FUNCTION public.regnotify_now()

REVOKE ALL ON FUNCTION public.regnotify_now() FROM PUBLIC;
GRANT ALL ON FUNCTION public.regnotify_now() TO service_role;

-- ACL FUNCTION public.regnotify_skip_reason(p_channel text, p_pref text, p_phone text, p_email text, p_fallback boolean, p_notify_customer boolean, p_old_stage text, p_new_stage text)

REVOKE ALL ON FUNCTION public.regnotify_skip_reason(p_channel text, p_pref text, p_phone text, p_email text, p_fallback boolean, p_notify_customer boolean, p_old_stage text, p_new_stage text) FROM PUBLIC;
GRANT ALL ON FUNCTION public.regnotify_skip_reason(p_channel text, p_pref text, p_phone text, p_email text, p_fallback boolean, p_notify_customer boolean, p_old_stage text, p_new_stage text) TO authenticated;
GRANT ALL ON FUNCTION public.regnotify_skip_reason(p_channel text, p_pref text, p_phone text, p_email text, p_fallback boolean, p_notify_customer boolean, p_old_stage text, p_new_stage text) TO service_role;

-- ACL FUNCTION public.request_notification(p_registration_id uuid, p_bypass_quiet_hours boolean)

REVOKE ALL ON FUNCTION public.request_notification(p_registration_id uuid, p_bypass_quiet_hours boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION public.request_notification(p_registration_id uuid, p_bypass_quiet_hours boolean) TO authenticated;
GRANT ALL ON FUNCTION public.request_notification(p_registration_id uuid, p_bypass_quiet_hours boolean) TO service_role;

-- ACL FUNCTION public.staff_me()

REVOKE ALL ON FUNCTION public.staff_me() FROM PUBLIC;
GRANT ALL ON FUNCTION public.staff_me() TO authenticated;

-- ACL FUNCTION public.timeline_caller_is_customer()

REVOKE ALL ON FUNCTION public.timeline_caller_is_customer() FROM PUBLIC;
GRANT ALL ON FUNCTION public.timeline_caller_is_customer() TO authenticated;
GRANT ALL ON FUNCTION public.timeline_caller_is_customer() TO service_role;

-- ACL FUNCTION public.timeline_fallbacks(p_registration_id uuid)

REVOKE ALL ON FUNCTION public.timeline_fallbacks(p_registration_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.timeline_fallbacks(p_registration_id uuid) TO authenticated;
GRANT ALL ON FUNCTION public.timeline_fallbacks(p_registration_id uuid) TO service_role;

-- ACL FUNCTION public.timeline_holds(p_registration_id uuid)

REVOKE ALL ON FUNCTION public.timeline_holds(p_registration_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.timeline_holds(p_registration_id uuid) TO authenticated;
GRANT ALL ON FUNCTION public.timeline_holds(p_registration_id uuid) TO service_role;

-- ACL FUNCTION public.timeline_messages(p_registration_id uuid)

REVOKE ALL ON FUNCTION public.timeline_messages(p_registration_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.timeline_messages(p_registration_id uuid) TO authenticated;
GRANT ALL ON FUNCTION public.timeline_messages(p_registration_id uuid) TO service_role;

-- ACL FUNCTION public.timeline_preference_changes(p_registration_id uuid)

REVOKE ALL ON FUNCTION public.timeline_preference_changes(p_registration_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.timeline_preference_changes(p_registration_id uuid) TO authenticated;
GRANT ALL ON FUNCTION public.timeline_preference_changes(p_registration_id uuid) TO service_role;

-- ACL FUNCTION public.timeline_registration(p_registration_id uuid)

REVOKE ALL ON FUNCTION public.timeline_registration(p_registration_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.timeline_registration(p_registration_id uuid) TO authenticated;
GRANT ALL ON FUNCTION public.timeline_registration(p_registration_id uuid) TO service_role;

-- ACL FUNCTION public.timeline_replies(p_registration_id uuid)

REVOKE ALL ON FUNCTION public.timeline_replies(p_registration_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.timeline_replies(p_registration_id uuid) TO authenticated;
GRANT ALL ON FUNCTION public.timeline_replies(p_registration_id uuid) TO service_role;

-- ACL FUNCTION public.timeline_staff_actions(p_registration_id uuid)

REVOKE ALL ON FUNCTION public.timeline_staff_actions(p_registration_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.timeline_staff_actions(p_registration_id uuid) TO authenticated;
GRANT ALL ON FUNCTION public.timeline_staff_actions(p_registration_id uuid) TO service_role;

-- ACL FUNCTION public.timeline_stage_changes(p_registration_id uuid)

REVOKE ALL ON FUNCTION public.timeline_stage_changes(p_registration_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION public.timeline_stage_changes(p_registration_id uuid) TO authenticated;
GRANT ALL ON FUNCTION public.timeline_stage_changes(p_registration_id uuid) TO service_role;

-- ACL FUNCTION regnotify.adopted(p_key text)

REVOKE ALL ON FUNCTION regnotify.adopted(p_key text) FROM PUBLIC;

-- ACL FUNCTION regnotify.created(p_key text)

REVOKE ALL ON FUNCTION regnotify.created(p_key text) FROM PUBLIC;

-- ACL FUNCTION regnotify_staff.find_registrations(p_phone text, p_email text, p_vin text, p_name text, p_limit integer)

REVOKE ALL ON FUNCTION regnotify_staff.find_registrations(p_phone text, p_email text, p_vin text, p_name text, p_limit integer) FROM PUBLIC;
GRANT ALL ON FUNCTION regnotify_staff.find_registrations(p_phone text, p_email text, p_vin text, p_name text, p_limit integer) TO authenticated;

-- ACL FUNCTION regnotify_staff.mark_handled(p_kind text, p_id bigint)

REVOKE ALL ON FUNCTION regnotify_staff.mark_handled(p_kind text, p_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION regnotify_staff.mark_handled(p_kind text, p_id bigint) TO authenticated;

-- ACL FUNCTION regnotify_staff.record_action(p_registration_id uuid, p_action text, p_detail jsonb)

REVOKE ALL ON FUNCTION regnotify_staff.record_action(p_registration_id uuid, p_action text, p_detail jsonb) FROM PUBLIC;
GRANT ALL ON FUNCTION regnotify_staff.record_action(p_registration_id uuid, p_action text, p_detail jsonb) TO authenticated;

-- ACL FUNCTION regnotify_staff.require_admin()

REVOKE ALL ON FUNCTION regnotify_staff.require_admin() FROM PUBLIC;
GRANT ALL ON FUNCTION regnotify_staff.require_admin() TO authenticated;

-- ACL FUNCTION regnotify_staff.resend(p_delivery_id bigint)

REVOKE ALL ON FUNCTION regnotify_staff.resend(p_delivery_id bigint) FROM PUBLIC;
GRANT ALL ON FUNCTION regnotify_staff.resend(p_delivery_id bigint) TO authenticated;

-- ACL FUNCTION regnotify_staff.send_now(p_registration_id uuid, p_bypass_quiet_hours boolean)

REVOKE ALL ON FUNCTION regnotify_staff.send_now(p_registration_id uuid, p_bypass_quiet_hours boolean) FROM PUBLIC;
GRANT ALL ON FUNCTION regnotify_staff.send_now(p_registration_id uuid, p_bypass_quiet_hours boolean) TO authenticated;

-- ACL FUNCTION regnotify_staff.silence_next(p_registration_id uuid)

REVOKE ALL ON FUNCTION regnotify_staff.silence_next(p_registration_id uuid) FROM PUBLIC;
GRANT ALL ON FUNCTION regnotify_staff.silence_next(p_registration_id uuid) TO authenticated;

-- ACL TABLE public.coordination_slots

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.coordination_slots TO service_role;

-- ACL TABLE public.inbound_messages

GRANT SELECT ON TABLE public.inbound_messages TO authenticated;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.inbound_messages TO service_role;

-- ACL TABLE public.notification_config

GRANT SELECT,UPDATE ON TABLE public.notification_config TO service_role;

-- ACL COLUMN public.notification_config.id

GRANT SELECT(id) ON TABLE public.notification_config TO authenticated;

-- ACL COLUMN public.notification_config.quiet_hours_start

GRANT SELECT(quiet_hours_start) ON TABLE public.notification_config TO authenticated;

-- ACL COLUMN public.notification_config.quiet_hours_end

GRANT SELECT(quiet_hours_end) ON TABLE public.notification_config TO authenticated;

-- ACL COLUMN public.notification_config.quiet_hours_channels

GRANT SELECT(quiet_hours_channels) ON TABLE public.notification_config TO authenticated;

-- ACL COLUMN public.notification_config.default_time_zone

GRANT SELECT(default_time_zone) ON TABLE public.notification_config TO authenticated;

-- ACL COLUMN public.notification_config.default_language

GRANT SELECT(default_language) ON TABLE public.notification_config TO authenticated;

-- ACL TABLE public.notification_languages

GRANT SELECT ON TABLE public.notification_languages TO authenticated;
GRANT SELECT ON TABLE public.notification_languages TO service_role;

-- ACL TABLE public.notification_pref_changes

GRANT SELECT ON TABLE public.notification_pref_changes TO service_role;
GRANT SELECT ON TABLE public.notification_pref_changes TO authenticated;

-- ACL TABLE public.notification_preferences

GRANT SELECT ON TABLE public.notification_preferences TO authenticated;
GRANT SELECT ON TABLE public.notification_preferences TO service_role;

-- ACL TABLE public.notification_queue

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.notification_queue TO authenticated;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.notification_queue TO service_role;

-- ACL TABLE public.notification_skip_reasons

GRANT SELECT ON TABLE public.notification_skip_reasons TO authenticated;
GRANT SELECT ON TABLE public.notification_skip_reasons TO service_role;

-- ACL TABLE public.registration_notifications

GRANT SELECT ON TABLE public.registration_notifications TO authenticated;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.registration_notifications TO service_role;

-- ACL TABLE public.registration_replies

GRANT SELECT ON TABLE public.registration_replies TO authenticated;
GRANT SELECT ON TABLE public.registration_replies TO service_role;

-- ACL TABLE public.registration_stages

GRANT SELECT ON TABLE public.registration_stages TO anon;
GRANT SELECT ON TABLE public.registration_stages TO authenticated;
GRANT SELECT ON TABLE public.registration_stages TO service_role;

-- ACL TABLE public.registrations

GRANT SELECT,INSERT,DELETE ON TABLE public.registrations TO authenticated;
GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.registrations TO service_role;

-- ACL COLUMN public.registrations.customer_name

GRANT UPDATE(customer_name) ON TABLE public.registrations TO authenticated;

-- ACL COLUMN public.registrations.customer_phone

GRANT UPDATE(customer_phone) ON TABLE public.registrations TO authenticated;

-- ACL COLUMN public.registrations.customer_email

GRANT UPDATE(customer_email) ON TABLE public.registrations TO authenticated;

-- ACL COLUMN public.registrations.vin

GRANT UPDATE(vin) ON TABLE public.registrations TO authenticated;

-- ACL COLUMN public.registrations.vehicle_year

GRANT UPDATE(vehicle_year) ON TABLE public.registrations TO authenticated;

-- ACL COLUMN public.registrations.vehicle_make

GRANT UPDATE(vehicle_make) ON TABLE public.registrations TO authenticated;

-- ACL COLUMN public.registrations.vehicle_model

GRANT UPDATE(vehicle_model) ON TABLE public.registrations TO authenticated;

-- ACL COLUMN public.registrations.plate_number

GRANT UPDATE(plate_number) ON TABLE public.registrations TO authenticated;

-- ACL COLUMN public.registrations.current_stage

GRANT UPDATE(current_stage) ON TABLE public.registrations TO authenticated;

-- ACL COLUMN public.registrations.updated_at

GRANT UPDATE(updated_at) ON TABLE public.registrations TO authenticated;

-- ACL COLUMN public.registrations.notification_pref

GRANT UPDATE(notification_pref) ON TABLE public.registrations TO authenticated;

-- ACL COLUMN public.registrations.pending_notify_customer

GRANT UPDATE(pending_notify_customer) ON TABLE public.registrations TO authenticated;

-- ACL COLUMN public.registrations.time_zone

GRANT UPDATE(time_zone) ON TABLE public.registrations TO authenticated;

-- ACL COLUMN public.registrations.language

GRANT UPDATE(language) ON TABLE public.registrations TO authenticated;

-- ACL TABLE public.reply_digests

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.reply_digests TO service_role;

-- ACL TABLE public.sms_opt_outs

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.sms_opt_outs TO service_role;

-- ACL COLUMN public.sms_opt_outs.phone

GRANT SELECT(phone) ON TABLE public.sms_opt_outs TO authenticated;

-- ACL COLUMN public.sms_opt_outs.opted_out

GRANT SELECT(opted_out) ON TABLE public.sms_opt_outs TO authenticated;

-- ACL TABLE public.staff_actions

GRANT SELECT ON TABLE public.staff_actions TO authenticated;
GRANT SELECT ON TABLE public.staff_actions TO service_role;

-- ACL TABLE public.staff_members

GRANT SELECT ON TABLE public.staff_members TO authenticated;

-- ACL TABLE public.webhook_events

GRANT SELECT,INSERT,DELETE,UPDATE ON TABLE public.webhook_events TO service_role;
