-- 27 One place per rule: why a delivery does not go out, and the values
-- a preference, a language and a skip reason may take.
--
--   * notification_preferences, notification_languages, notification_skip_reasons:
--     one row per value. Foreign keys replace the CHECK lists of 04
--     (notification_pref), 10 (skip_reason, which widened 04's) and 17
--     (the three language columns); a trigger on the columns people write
--     asks the tables instead of a CHECK listing values. A new value is one INSERT in a
--     migration. A preference row also says which channels it chooses: the
--     rule below reads that instead of spelling out 'both' and 'none'.
--     Python reads the same values from db/vocabulary.py, generated from
--     these tables and checked against them by a test.
--   * regnotify_skip_reason(...): the consent rule, once. The queue claim
--     (sql/queries/queue.sql), both send claims and the send's load
--     (sql/queries/deliveries.sql), the fallback (sql/queries/fallback.sql)
--     and request_notification (13, 21; redefined below) all ask it.
--
-- Safe to apply twice; runs under psql -f, regnotify migrate and the Supabase CLI.

-- 1 ─ The values ─────────────────────────────────────────────────────────────

-- Tables rather than domains: a domain's CHECK is one list that every new
-- value rewrites (ALTER DOMAIN ... DROP/ADD CONSTRAINT restating them all),
-- Python could read it only by parsing the constraint's text, and it cannot
-- say what a preference means. A row can: adding one is an INSERT.
CREATE TABLE IF NOT EXISTS public.notification_preferences (
    pref     text PRIMARY KEY,
    -- The channels a delivery may go on under this preference; empty: none.
    channels text[] NOT NULL,
    -- The order forms and the API list them in.
    position smallint NOT NULL
);

CREATE TABLE IF NOT EXISTS public.notification_languages (
    language text PRIMARY KEY,
    -- The language named in itself.
    name     text NOT NULL,
    position smallint NOT NULL
);

CREATE TABLE IF NOT EXISTS public.notification_skip_reasons (
    reason  text PRIMARY KEY,
    meaning text NOT NULL
);

-- Only missing rows: a dealership's own wording survives re-applying.
INSERT INTO public.notification_preferences (pref, channels, position) VALUES
    ('sms',   '{sms}',       1),
    ('email', '{email}',     2),
    ('both',  '{sms,email}', 3),
    ('none',  '{}',          4)
ON CONFLICT (pref) DO NOTHING;

INSERT INTO public.notification_languages (language, name, position) VALUES
    ('en', 'English', 1),
    ('es', 'Español', 2)
ON CONFLICT (language) DO NOTHING;

INSERT INTO public.notification_skip_reasons (reason, meaning) VALUES
    ('preference',    'the customer''s preference leaves this channel out'),
    ('silenced',      'staff changed the stage without telling the customer'),
    ('no_net_change', 'the burst of changes ended on the stage it started from'),
    ('no_contact',    'no phone number or e-mail address for this channel'),
    ('opted_out',     'the phone number opted out of texts (STOP or Twilio 21610)'),
    ('superseded',    'a message held for quiet hours gave way to a newer one')
ON CONFLICT (reason) DO NOTHING;

-- Anyone signed in may read the values (nothing in them is private); only
-- the owner writes them, in migrations. RLS on, as on every table in public.
ALTER TABLE public.notification_preferences ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notification_languages ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notification_skip_reasons ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON public.notification_preferences, public.notification_languages,
              public.notification_skip_reasons
    FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON public.notification_preferences, public.notification_languages,
                public.notification_skip_reasons
    TO authenticated, service_role;
DROP POLICY IF EXISTS readable ON public.notification_preferences;
CREATE POLICY readable ON public.notification_preferences
    FOR SELECT TO authenticated, service_role USING (true);
DROP POLICY IF EXISTS readable ON public.notification_languages;
CREATE POLICY readable ON public.notification_languages
    FOR SELECT TO authenticated, service_role USING (true);
DROP POLICY IF EXISTS readable ON public.notification_skip_reasons;
CREATE POLICY readable ON public.notification_skip_reasons
    FOR SELECT TO authenticated, service_role USING (true);

-- Foreign keys in place of the CHECK lists. A value in use keeps its row
-- (NO ACTION): a language cannot be dropped from under a registration.
DO $keys$
DECLARE
    v_key record;
BEGIN
    FOR v_key IN
        SELECT * FROM (VALUES
            ('registrations', 'notification_pref', 'registrations_notification_pref_check',
             'notification_preferences', 'pref'),
            ('registrations', 'language', 'registrations_language_check',
             'notification_languages', 'language'),
            ('registration_notifications', 'language',
             'registration_notifications_language_check', 'notification_languages', 'language'),
            ('notification_config', 'default_language',
             'notification_config_default_language_check', 'notification_languages', 'language'),
            ('registration_notifications', 'skip_reason',
             'registration_notifications_skip_reason_check', 'notification_skip_reasons',
             'reason')
        ) AS k (tbl, col, old_check, ref, ref_col)
    LOOP
        -- The CHECK listing the values goes (a trigger, below, asks the table).
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conname = v_key.old_check) THEN
            EXECUTE pg_catalog.format('ALTER TABLE public.%I DROP CONSTRAINT %I',
                                      v_key.tbl, v_key.old_check);
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                       WHERE conrelid = pg_catalog.format('public.%I', v_key.tbl)::regclass
                         AND conname = v_key.tbl || '_' || v_key.col || '_fkey') THEN
            EXECUTE pg_catalog.format(
                'ALTER TABLE public.%I ADD CONSTRAINT %I FOREIGN KEY (%I) '
                'REFERENCES public.%I (%I)',
                v_key.tbl, v_key.tbl || '_' || v_key.col || '_fkey', v_key.col,
                v_key.ref, v_key.ref_col);
        END IF;
    END LOOP;
END
$keys$;

-- The three columns a person writes (a customer's preference and language,
-- staff's default language) are checked against the tables by a trigger
-- that fires only when one of them is written, and refuses a value as the
-- CHECK lists did: a check violation (SQLSTATE 23514) naming the column's
-- old constraint. Not a CHECK calling a function: PostgreSQL runs every
-- CHECK on every UPDATE, so a stage change would pay a function call for a
-- column it never touches. The foreign keys above stay the data's guard.
CREATE OR REPLACE FUNCTION public.regnotify_check_vocabulary()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
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
$fn$;

-- A trigger runs as whoever writes the row: customers (authenticated),
-- staff, the backend (service_role) and the owner.
REVOKE ALL ON FUNCTION public.regnotify_check_vocabulary() FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION public.regnotify_check_vocabulary() TO authenticated, service_role;

ALTER TABLE public.registrations
    DROP CONSTRAINT IF EXISTS registrations_notification_pref_check,
    DROP CONSTRAINT IF EXISTS registrations_language_check;
ALTER TABLE public.notification_config
    DROP CONSTRAINT IF EXISTS notification_config_default_language_check;

DROP TRIGGER IF EXISTS regnotify_check_vocabulary ON public.registrations;
CREATE TRIGGER regnotify_check_vocabulary
    BEFORE INSERT OR UPDATE OF notification_pref, language ON public.registrations
    FOR EACH ROW EXECUTE FUNCTION public.regnotify_check_vocabulary('notification_pref', 'language');
DROP TRIGGER IF EXISTS regnotify_check_vocabulary ON public.notification_config;
CREATE TRIGGER regnotify_check_vocabulary
    BEFORE INSERT OR UPDATE OF default_language ON public.notification_config
    FOR EACH ROW EXECUTE FUNCTION public.regnotify_check_vocabulary('default_language');

-- 2 ─ The rule ───────────────────────────────────────────────────────────────

-- Why a delivery on p_channel must not go out to this registration, or
-- NULL: it may. The first reason that applies, in this order:
--   preference     the preference's channels leave p_channel out; a
--                  fallback (p_fallback) goes on any preference that
--                  chooses a channel at all, never on one that chooses none;
--   silenced       the burst was marked not to tell the customer;
--   no_net_change  the burst ended on the stage it started from;
--   no_contact     no address for the channel (NULL or empty);
--   opted_out      the phone opted out: no text, and no fallback of either
--                  kind (we neither text them nor e-mail them instead of
--                  the text they refused).
-- The burst's inputs (p_notify_customer, p_old_stage, p_new_stage) are the
-- queue claim's; every later check passes the defaults, which never skip.
-- SECURITY INVOKER: the caller's RLS decides which opt-outs it sees (a
-- customer calling it through /rest/v1/rpc learns only about their own phone).
CREATE OR REPLACE FUNCTION public.regnotify_skip_reason(
    p_channel text, p_pref text, p_phone text, p_email text,
    p_fallback boolean DEFAULT false, p_notify_customer boolean DEFAULT true,
    p_old_stage text DEFAULT NULL, p_new_stage text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $fn$
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
$fn$;

REVOKE ALL ON FUNCTION public.regnotify_skip_reason(text, text, text, text, boolean, boolean,
                                                    text, text)
    FROM PUBLIC, anon, authenticated, service_role;
-- request_notification runs as its caller (staff, the backend) and asks it;
-- the queue run and the sends run as the owner or as service_role.
GRANT EXECUTE ON FUNCTION public.regnotify_skip_reason(text, text, text, text, boolean,
                                                       boolean, text, text)
    TO authenticated, service_role;

-- 3 ─ request_notification asks the rule ────────────────────────────────────

-- As in 21, but each channel's decision is regnotify_skip_reason's, the one
-- the queue claim will make: a channel the preference leaves out is not
-- listed, one left out for another reason is listed in "skipped".
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
$fn$;

-- CREATE OR REPLACE keeps its grants (13); restated so this file alone leaves
-- them right under Supabase's default privileges.
REVOKE ALL ON FUNCTION public.request_notification(uuid, boolean)
    FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.request_notification(uuid, boolean)
    TO authenticated, service_role;
