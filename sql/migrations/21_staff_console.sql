-- 21 The staff console: who is staff, what staff did, and what the pages read.
--
--   * staff_members: who may use /staff. Admin rights from a token regnotify
--     issued (iss = regnotify) now hold only while its e-mail is an active
--     member: jwt_is_admin() looks the member up on every statement, so a
--     removed member's live session stops at its next request. Supabase's
--     tokens (app_metadata.role = admin) keep working as before.
--   * staff_actions: every action taken in the console (who, when, what); it
--     shows in notification_timeline as "staff_action" events (staff only).
--   * handled_at on deliveries and replies: "mark handled". Who handled it is
--     only in staff_actions (admin only): customers read their own deliveries
--     and replies, and a staff e-mail on those rows would reach them.
--   * staff_sign_in_codes: the digests of the console's own sign-in codes, in
--     the database so that a code works on any relay replica (owner only).
--   * request_notification() and timeline_caller_is_customer() ask
--     jwt_is_admin(), so a regnotify admin token of a non-member is no admin
--     there either.
--   * Schema regnotify_staff: the few SECURITY DEFINER functions the console
--     calls (search by contact, re-send, mark handled, record an action).
--     Each refuses anyone but an admin with 42501 before reading anything.
--     They live outside `public`, so PostgREST does not expose them.
--   * Indexes for the console's list, filters and searches.
--
-- Safe to apply twice; runs under psql -f, regnotify migrate and the Supabase CLI.

-- 1 ─ Staff members ──────────────────────────────────────────────────────────

CREATE TABLE IF NOT EXISTS public.staff_members (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Kept lower case, so the token's e-mail matches whatever case was typed.
    email      text NOT NULL,
    name       text NOT NULL CHECK (length(btrim(name)) > 0),
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    removed_at timestamptz,
    CONSTRAINT staff_members_email_key UNIQUE (email),
    CONSTRAINT staff_members_email_lower CHECK (email = lower(email)),
    CONSTRAINT staff_members_email_shape
        CHECK (email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$')
);

ALTER TABLE public.staff_members ENABLE ROW LEVEL SECURITY;

-- A signed-in member reads their own row (jwt_is_admin() below looks it up as
-- the caller); nobody else reads or writes it through the API: the CLI
-- (`regnotify staff add/remove`) writes it on the owner's connection.
REVOKE ALL ON TABLE public.staff_members FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON SEQUENCE public.staff_members_id_seq FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.staff_members TO authenticated;

-- Reads the claims directly (not jwt_is_admin(), which reads this table).
DROP POLICY IF EXISTS member_reads_own_row ON public.staff_members;
CREATE POLICY member_reads_own_row ON public.staff_members
    FOR SELECT TO authenticated
    USING (email = lower(nullif(auth.jwt() ->> 'email', '')));

-- 2 ─ Admin rights ───────────────────────────────────────────────────────────

-- SECURITY INVOKER and STABLE: the policies call it as `(SELECT
-- public.jwt_is_admin())`, once per statement, so the membership lookup (a
-- unique-index probe) costs one probe per request, not one per row.
CREATE OR REPLACE FUNCTION public.jwt_is_admin()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT coalesce(auth.jwt() -> 'app_metadata' ->> 'role', '') = 'admin'
       AND (coalesce(auth.jwt() ->> 'iss', '') <> 'regnotify'
            OR EXISTS (SELECT 1 FROM public.staff_members AS s
                       WHERE s.email = lower(nullif(auth.jwt() ->> 'email', ''))
                         AND s.active))
$fn$;

REVOKE ALL ON FUNCTION public.jwt_is_admin() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.jwt_is_admin() TO authenticated;

-- 2b ─ Admin, as jwt_is_admin() says, in 13's functions ───────────────────────

-- 13 read app_metadata.role from the claims itself in these two, so a
-- regnotify admin token of someone who is not (or no longer) an active member
-- still passed there. They are 13's, asking jwt_is_admin() instead.

CREATE OR REPLACE FUNCTION public.timeline_caller_is_customer()
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $fn$
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
$fn$;

CREATE OR REPLACE FUNCTION public.request_notification(
    p_registration_id uuid, p_bypass_quiet_hours boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
DECLARE
    v_claims   jsonb := coalesce(nullif(pg_catalog.current_setting('request.jwt.claims', true),
                                        '')::jsonb, '{}'::jsonb);
    v_reg      record;
    v_cfg      record;
    v_chosen   text[];
    v_channel  text;
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
    SELECT r.id, r.customer_phone, r.customer_email, r.notification_pref, r.time_zone,
           coalesce(o.opted_out, false) AS sms_opted_out
    INTO v_reg
    FROM public.registrations AS r
    LEFT JOIN public.sms_opt_outs AS o ON o.phone = r.customer_phone
    WHERE r.id = p_registration_id
    FOR UPDATE OF r;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no registration %', p_registration_id USING ERRCODE = 'no_data_found';
    END IF;

    -- The claim's decisions (sql/queries/queue.sql, claim_due), said beforehand.
    IF v_reg.notification_pref = 'none' THEN
        RETURN pg_catalog.jsonb_build_object(
            'queued', false, 'reason', 'preference',
            'detail', 'the customer chose no messages (notification_pref = none)',
            'skipped', '[]'::jsonb);
    END IF;
    v_chosen := CASE v_reg.notification_pref WHEN 'both' THEN ARRAY['sms', 'email']
                ELSE ARRAY[v_reg.notification_pref] END;
    FOREACH v_channel IN ARRAY v_chosen LOOP
        IF v_channel = 'sms' AND v_reg.customer_phone IS NULL THEN
            v_skipped := v_skipped || pg_catalog.jsonb_build_object(
                'channel', 'sms', 'reason', 'no_contact',
                'detail', 'no SMS: no phone number on file');
        ELSIF v_channel = 'sms' AND v_reg.sms_opted_out THEN
            v_skipped := v_skipped || pg_catalog.jsonb_build_object(
                'channel', 'sms', 'reason', 'opted_out',
                'detail', 'no SMS: the phone number opted out (it can text START)');
        ELSIF v_channel = 'email' AND v_reg.customer_email IS NULL THEN
            v_skipped := v_skipped || pg_catalog.jsonb_build_object(
                'channel', 'email', 'reason', 'no_contact',
                'detail', 'no e-mail: no address on file');
        ELSE
            v_channels := v_channels || v_channel;
        END IF;
    END LOOP;
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
$fn$;

-- 3 ─ What staff did ─────────────────────────────────────────────────────────

CREATE TABLE IF NOT EXISTS public.staff_actions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registration_id uuid REFERENCES public.registrations (id) ON DELETE CASCADE,
    -- From the verified token at the time (never from a form).
    actor_email     text,
    actor_sub       text,
    action          text NOT NULL CHECK (action IN (
                        'send_now', 'silence_next', 'resend', 'mark_handled')),
    detail          jsonb NOT NULL DEFAULT '{}'::jsonb,
    at              timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS ix_staff_actions_registration
    ON public.staff_actions (registration_id, at);

ALTER TABLE public.staff_actions ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE public.staff_actions FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON SEQUENCE public.staff_actions_id_seq FROM PUBLIC, anon, authenticated, service_role;
-- Staff read the log; it is written only by regnotify_staff.record_action.
GRANT SELECT ON public.staff_actions TO authenticated, service_role;
DROP POLICY IF EXISTS admin_reads ON public.staff_actions;
CREATE POLICY admin_reads ON public.staff_actions
    FOR SELECT TO authenticated
    USING ((SELECT public.jwt_is_admin()));
DROP POLICY IF EXISTS service_role_reads ON public.staff_actions;
CREATE POLICY service_role_reads ON public.staff_actions
    FOR SELECT TO service_role USING (true);

-- 4 ─ Handled ─────────────────────────────────────────────────────────────────

-- Nullable without a default: adding them rewrites nothing. When, not who:
-- customers may read these rows; who is in staff_actions (admin only).
ALTER TABLE public.registration_notifications
    ADD COLUMN IF NOT EXISTS handled_at timestamptz;
ALTER TABLE public.inbound_messages
    ADD COLUMN IF NOT EXISTS handled_at timestamptz;

-- Who handled a delivery or a reply, as the console looks it up.
CREATE INDEX IF NOT EXISTS ix_staff_actions_item
    ON public.staff_actions (action, (detail ->> 'kind'), (detail ->> 'id'), at);
CREATE INDEX IF NOT EXISTS ix_staff_actions_delivery
    ON public.staff_actions ((detail ->> 'delivery_id'), at) WHERE action = 'resend';

-- 4b ─ The console's own sign-in codes ───────────────────────────────────────

-- A keyed hash of the address and one of the code (never either itself);
-- the relay writes and reads them on its own connection.
CREATE TABLE IF NOT EXISTS public.staff_sign_in_codes (
    key        bytea PRIMARY KEY,
    digest     bytea NOT NULL,
    expires_at timestamptz NOT NULL
);
ALTER TABLE public.staff_sign_in_codes ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE public.staff_sign_in_codes
    FROM PUBLIC, anon, authenticated, service_role;

-- 5 ─ Indexes for the console ─────────────────────────────────────────────────

-- Messages, newest first, by keyset (created_at, id): the list and the date filter.
CREATE INDEX IF NOT EXISTS ix_registration_notifications_created
    ON public.registration_notifications (created_at, id);
-- The same, filtered by status (failed, skipped, ...).
CREATE INDEX IF NOT EXISTS ix_registration_notifications_status_created
    ON public.registration_notifications (status, created_at, id);
-- Needs attention: small, only what nobody handled yet.
CREATE INDEX IF NOT EXISTS ix_registration_notifications_attention
    ON public.registration_notifications (created_at, id)
    WHERE handled_at IS NULL
      AND (status IN ('failed', 'bounced', 'complained') OR skip_reason = 'opted_out');
CREATE INDEX IF NOT EXISTS ix_inbound_messages_unhandled
    ON public.inbound_messages (received_at, id)
    WHERE handled_at IS NULL AND keyword_kind IS NULL;
-- Searches: an e-mail whatever its case, a VIN or its start, words of a name.
CREATE INDEX IF NOT EXISTS ix_registrations_customer_email_lower
    ON public.registrations (lower(customer_email));
CREATE INDEX IF NOT EXISTS ix_registrations_vin_upper
    ON public.registrations (upper(vin) text_pattern_ops);
CREATE INDEX IF NOT EXISTS ix_registrations_customer_name_words
    ON public.registrations USING gin (to_tsvector('simple'::regconfig, customer_name));

-- 6 ─ The console's functions ────────────────────────────────────────────────

CREATE SCHEMA IF NOT EXISTS regnotify_staff;
REVOKE ALL ON SCHEMA regnotify_staff FROM PUBLIC;
GRANT USAGE ON SCHEMA regnotify_staff TO authenticated;

-- Who the caller is in the console: their member row when the token is an
-- admin's and names an active member (any issuer); NULL otherwise. The
-- console shows nothing to a NULL. SECURITY INVOKER: the caller's own row.
CREATE OR REPLACE FUNCTION public.staff_me()
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT pg_catalog.jsonb_build_object('email', s.email, 'name', s.name)
    FROM public.staff_members AS s
    WHERE s.email = lower(nullif(auth.jwt() ->> 'email', ''))
      AND s.active
      AND public.jwt_is_admin()
$fn$;

CREATE OR REPLACE FUNCTION regnotify_staff.require_admin()
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $fn$
BEGIN
    IF NOT coalesce(public.jwt_is_admin(), false) THEN
        RAISE EXCEPTION 'only staff may do this' USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$fn$;

-- Registrations matching one search: a phone (E.164), an e-mail, the start
-- of a VIN, or words of a name (each word a prefix). DEFINER so the indexes
-- serve it: under row-level security PostgreSQL may not use an index whose
-- expression (lower(), upper(), to_tsvector) is not leakproof before the
-- policy, and falls back to reading every row. It returns ids only, to an
-- admin only; the rows themselves are read as the caller, under RLS.
CREATE OR REPLACE FUNCTION regnotify_staff.find_registrations(
    p_phone text, p_email text, p_vin text, p_name text, p_limit integer DEFAULT 500)
RETURNS SETOF uuid
ROWS 20
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = ''
AS $fn$
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
$fn$;

-- Record one action: who from the verified claims, never from the caller's input.
CREATE OR REPLACE FUNCTION regnotify_staff.record_action(
    p_registration_id uuid, p_action text, p_detail jsonb)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $fn$
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
$fn$;

-- Send now, through request_notification as the caller, and record it.
CREATE OR REPLACE FUNCTION regnotify_staff.send_now(
    p_registration_id uuid, p_bypass_quiet_hours boolean)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
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
$fn$;

-- Silence the next stage change (04's pending_notify_customer), as the caller.
CREATE OR REPLACE FUNCTION regnotify_staff.silence_next(p_registration_id uuid)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
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
$fn$;

-- Re-send a failed delivery as `regnotify retry-failed` does (the same
-- UPDATE as sql/queries/deliveries.sql requeue_failed); the caller then
-- publishes its send task. NULL: it is not failed (any more).
CREATE OR REPLACE FUNCTION regnotify_staff.resend(p_delivery_id bigint)
RETURNS jsonb
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $fn$
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
$fn$;

-- Mark a delivery ('delivery') or a reply ('reply') handled; false: unknown
-- or already handled.
CREATE OR REPLACE FUNCTION regnotify_staff.mark_handled(p_kind text, p_id bigint)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $fn$
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
$fn$;

-- 7 ─ The timeline shows what staff did (staff only: RLS hides the log) ────────

CREATE OR REPLACE FUNCTION public.timeline_staff_actions(p_registration_id uuid)
RETURNS TABLE (event_at timestamptz, tie bigint, event jsonb)
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT a.at, a.id, pg_catalog.jsonb_build_object(
        'kind', 'staff_action',
        'at', a.at,
        'id', a.id,
        'action', a.action,
        'actor_email', a.actor_email,
        'detail', a.detail)
    FROM public.staff_actions AS a
    WHERE a.registration_id = p_registration_id
$fn$;

-- 20's timeline with one more piece.
CREATE OR REPLACE FUNCTION public.notification_timeline(p_registration_id uuid)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
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
$fn$;

-- 8 ─ Grants ──────────────────────────────────────────────────────────────────

REVOKE ALL ON FUNCTION
    public.staff_me(),
    public.timeline_staff_actions(uuid),
    regnotify_staff.require_admin(),
    regnotify_staff.find_registrations(text, text, text, text, integer),
    regnotify_staff.record_action(uuid, text, jsonb),
    regnotify_staff.send_now(uuid, boolean),
    regnotify_staff.silence_next(uuid),
    regnotify_staff.resend(bigint),
    regnotify_staff.mark_handled(text, bigint)
FROM PUBLIC, anon, authenticated, service_role;

GRANT EXECUTE ON FUNCTION public.staff_me() TO authenticated;
GRANT EXECUTE ON FUNCTION public.timeline_staff_actions(uuid) TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION
    regnotify_staff.require_admin(),
    regnotify_staff.find_registrations(text, text, text, text, integer),
    regnotify_staff.record_action(uuid, text, jsonb),
    regnotify_staff.send_now(uuid, boolean),
    regnotify_staff.silence_next(uuid),
    regnotify_staff.resend(bigint),
    regnotify_staff.mark_handled(text, bigint)
TO authenticated;
