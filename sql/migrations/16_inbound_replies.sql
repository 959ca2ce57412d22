-- 16 Nothing a customer writes back is lost.
--
-- Every text that reaches the relay's inbound webhook is kept in
-- inbound_messages, once per Twilio MessageSid (Twilio retries a webhook).
-- A text that is no keyword reaches staff by e-mail: each one joins its
-- number's pending reply_digests row, which is debounced like
-- notification_queue (each reply pushes send_after out by debounce_window,
-- capped at max_wait after the first), claimed by the queue run and sent
-- through the e-mail provider under the e-mail rate limit.
--
-- The keyword lists are data (notification_config.*_keywords), so a
-- dealership that adds keywords to Twilio's Advanced Opt-Out (Spanish ones,
-- say) adds them here too.
--
-- Safe to apply twice; runs under psql -f, regnotify migrate and the Supabase CLI.

-- 1 ─ Settings ──────────────────────────────────────────────────────────────

ALTER TABLE public.notification_config
    -- Where customers' replies go; NULL: kept in inbound_messages only, and
    -- the customer hears nothing back.
    ADD COLUMN IF NOT EXISTS staff_email text,
    -- The answer to HELP/INFO; NULL: the relay leaves HELP to Twilio's own
    -- keyword handling (see the README's webhook section).
    ADD COLUMN IF NOT EXISTS help_reply text,
    -- The number customers may call, quoted in the "passed on" answer.
    ADD COLUMN IF NOT EXISTS dealership_phone text,
    -- A number hears "passed on" at most once per this; NULL: never.
    ADD COLUMN IF NOT EXISTS reply_ack_every interval DEFAULT interval '1 day',
    ADD COLUMN IF NOT EXISTS opt_out_keywords text[] NOT NULL
        DEFAULT '{STOP,STOPALL,UNSUBSCRIBE,CANCEL,END,QUIT,REVOKE,OPTOUT}',
    ADD COLUMN IF NOT EXISTS opt_in_keywords text[] NOT NULL DEFAULT '{START,UNSTOP,YES}',
    ADD COLUMN IF NOT EXISTS help_keywords text[] NOT NULL DEFAULT '{HELP,INFO}';

DO $settings$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'notification_config_staff_email_shape') THEN
        ALTER TABLE public.notification_config
            ADD CONSTRAINT notification_config_staff_email_shape
            CHECK (staff_email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'notification_config_reply_ack_every_positive') THEN
        ALTER TABLE public.notification_config
            ADD CONSTRAINT notification_config_reply_ack_every_positive
            CHECK (reply_ack_every > interval '0');
    END IF;
END
$settings$;

-- 2 ─ Replies and their digests ───────────────────────────────────────────────

-- One e-mail to staff per burst of replies from one number.
CREATE TABLE IF NOT EXISTS public.reply_digests (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_phone          text NOT NULL,
    registration_id     uuid REFERENCES public.registrations (id) ON DELETE SET NULL,
    first_at            timestamptz NOT NULL DEFAULT now(),
    send_after          timestamptz NOT NULL,
    reply_count         int NOT NULL DEFAULT 1,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    -- The staff address at the claim, so a retry sends the same payload.
    recipient           text,
    attempts            int NOT NULL DEFAULT 0,
    lease_until         timestamptz,
    -- Set by each claim of the queue run and carried by the send task it
    -- publishes: a task of an earlier claim (its lease lapsed while it sat in
    -- a backlog) finds the digest no longer its own and sends nothing.
    claim_token         text,
    provider_message_id text,
    error_code          text,
    error_message       text,
    sent_at             timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- One pending digest per number: the upsert's conflict target.
CREATE UNIQUE INDEX IF NOT EXISTS uq_reply_digests_pending
    ON public.reply_digests (from_phone) WHERE (status = 'pending');
-- The claim: pending by send_after, and sends whose lease lapsed.
CREATE INDEX IF NOT EXISTS ix_reply_digests_open
    ON public.reply_digests (send_after) WHERE (status IN ('pending', 'sending'));

CREATE TABLE IF NOT EXISTS public.inbound_messages (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_sid     text NOT NULL,
    from_phone      text NOT NULL,
    to_phone        text,
    body            text NOT NULL DEFAULT '',
    received_at     timestamptz NOT NULL DEFAULT now(),
    -- The sender's registration (the newest with that phone); NULL: unknown number.
    registration_id uuid REFERENCES public.registrations (id) ON DELETE SET NULL,
    -- The keyword as matched (upper case), NULL for an ordinary reply.
    keyword         text,
    keyword_kind    text CHECK (keyword_kind IN ('opt_out', 'opt_in', 'help')),
    digest_id       bigint REFERENCES public.reply_digests (id) ON DELETE SET NULL,
    -- When the customer was told their text was passed on (this message's answer).
    acknowledged_at timestamptz,
    CONSTRAINT uq_inbound_messages_message_sid UNIQUE (message_sid)
);

CREATE INDEX IF NOT EXISTS ix_inbound_messages_registration
    ON public.inbound_messages (registration_id, received_at);
CREATE INDEX IF NOT EXISTS ix_inbound_messages_from_phone
    ON public.inbound_messages (from_phone, received_at);
CREATE INDEX IF NOT EXISTS ix_inbound_messages_received_at
    ON public.inbound_messages (received_at);
CREATE INDEX IF NOT EXISTS ix_inbound_messages_digest
    ON public.inbound_messages (digest_id) WHERE digest_id IS NOT NULL;

ALTER TABLE public.inbound_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.reply_digests ENABLE ROW LEVEL SECURITY;

-- 3 ─ The timeline's view of replies ─────────────────────────────────────────

-- One row per reply of a known registration, in the shape a timeline needs.
-- security_invoker: whoever reads it gets inbound_messages' row-level
-- security, so a customer sees their own replies only.
CREATE OR REPLACE VIEW public.registration_replies
WITH (security_invoker = true) AS
SELECT m.registration_id,
       m.received_at AS at,
       'reply'::text AS event,
       m.keyword,
       m.keyword_kind,
       m.body,
       m.from_phone,
       m.message_sid,
       m.digest_id
FROM public.inbound_messages AS m
WHERE m.registration_id IS NOT NULL;

-- 4 ─ Grants and policies (as 12: revoke everything, grant what is needed) ──

REVOKE ALL ON TABLE public.inbound_messages, public.reply_digests, public.registration_replies
FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON SEQUENCE public.inbound_messages_id_seq, public.reply_digests_id_seq
FROM PUBLIC, anon, authenticated, service_role;

-- Customers read their own replies, staff (admin JWT) all; nobody writes
-- through the API but the backend.
GRANT SELECT ON public.inbound_messages, public.registration_replies TO authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.inbound_messages, public.reply_digests
    TO service_role;
GRANT SELECT ON public.registration_replies TO service_role;

-- A customer's own: the reply came from the registration's current phone,
-- which is theirs (a previous owner of the number sees nothing of it).
DROP POLICY IF EXISTS authenticated_select ON public.inbound_messages;
CREATE POLICY authenticated_select ON public.inbound_messages
    FOR SELECT TO authenticated
    USING ((SELECT public.jwt_is_admin()) OR (
        from_phone = (SELECT public.jwt_customer_phone())
        AND EXISTS (SELECT 1 FROM public.registrations r
                    WHERE r.id = registration_id AND r.customer_phone = from_phone)));

DROP POLICY IF EXISTS service_role_all ON public.inbound_messages;
CREATE POLICY service_role_all ON public.inbound_messages
    FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS service_role_all ON public.reply_digests;
CREATE POLICY service_role_all ON public.reply_digests
    FOR ALL TO service_role USING (true) WITH CHECK (true);

-- 5 ─ Retention: replies follow the delivery history's age ───────────────────

-- Migration 11's functions again, with one more kind: 'replies' (inbound
-- messages, and digests already sent or failed) goes after retain_deliveries,
-- like the deliveries it answers. NULL keeps them forever.
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
$fn$;

CREATE OR REPLACE FUNCTION public.prune_notifications(batch_size integer DEFAULT 5000)
RETURNS TABLE (kind text, deleted bigint)
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
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
$fn$;

-- CREATE OR REPLACE keeps 11's privileges; said again so this file stands alone.
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
