-- 22 Security: random session subjects, a MessageSid record that outlives
-- pruning, an hourly cap on staff digests, and a timeline that never names
-- another person to a customer.
--
-- * customer_subjects: the `sub` of regnotify's own session tokens, random
--   and stored per phone number. Until now it was uuid5("tel:" + phone), so
--   anyone who saw it could find the number by trying them all.
-- * seen_message_sids: a compact record (16 bytes of SHA-256 and a date) of
--   every inbound MessageSid. Twilio's signatures carry no time, so a
--   captured STOP or START could be replayed once retention pruned its row
--   of inbound_messages; the record stays (prune_notifications leaves it).
-- * notification_config.staff_digest_hourly_cap: at most this many reply
--   digests e-mailed to staff per hour; what passes it waits for one summary
--   e-mail per hour (nothing is dropped). NULL: no cap.
-- * timeline_preference_changes: a customer reads "you", "staff" or "the
--   dealership" (changed_by_label) for who changed a preference, never an id
--   (a registration's earlier holder's id among them). Only this piece of
--   notification_timeline is redefined.
-- * Customers' preference changes recorded under the old subject are mapped
--   to the number's random one, so "you" still finds them.

-- 1 ─ Session subjects ────────────────────────────────────────────────────────

CREATE TABLE IF NOT EXISTS public.customer_subjects (
    phone           text PRIMARY KEY,
    subject         uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_sign_in_at timestamptz NOT NULL DEFAULT now()
);

-- 2 ─ Inbound MessageSids seen ────────────────────────────────────────────────

CREATE TABLE IF NOT EXISTS public.seen_message_sids (
    -- The first 16 bytes of SHA-256 of the MessageSid: a collision among a
    -- dealership's texts is out of reach, and the row stays small.
    sid_digest bytea PRIMARY KEY CHECK (length(sid_digest) = 16),
    seen_on    date NOT NULL DEFAULT current_date
);

-- Texts kept before this migration are seen too.
INSERT INTO public.seen_message_sids (sid_digest, seen_on)
SELECT substring(sha256(convert_to(m.message_sid, 'UTF8')) FROM 1 FOR 16),
       m.received_at::date
FROM public.inbound_messages AS m
ON CONFLICT (sid_digest) DO NOTHING;

-- 3 ─ The staff digests' hourly cap ───────────────────────────────────────────

ALTER TABLE public.notification_config
    ADD COLUMN IF NOT EXISTS staff_digest_hourly_cap integer DEFAULT 30;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'notification_config_staff_digest_cap_positive') THEN
        ALTER TABLE public.notification_config
            ADD CONSTRAINT notification_config_staff_digest_cap_positive
            CHECK (staff_digest_hourly_cap IS NULL OR staff_digest_hourly_cap >= 1);
    END IF;
END
$$;

-- A digest e-mailed on its own or inside the hour's summary, and when it was
-- first claimed for sending (the cap counts claims within the last hour).
ALTER TABLE public.reply_digests
    ADD COLUMN IF NOT EXISTS claimed_at timestamptz,
    ADD COLUMN IF NOT EXISTS in_summary boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS ix_reply_digests_claimed
    ON public.reply_digests (claimed_at) WHERE claimed_at IS NOT NULL;

-- Least privilege: only the backend (the owner it connects as) reads these.
ALTER TABLE public.customer_subjects ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.seen_message_sids ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON TABLE public.customer_subjects, public.seen_message_sids FROM PUBLIC;
DO $grants$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON TABLE public.customer_subjects, '
                           'public.seen_message_sids FROM %I', r);
        END IF;
    END LOOP;
END
$grants$;

-- 4 ─ Who changed a preference, as a customer reads it ───────────────────────

CREATE OR REPLACE FUNCTION public.timeline_preference_changes(p_registration_id uuid)
RETURNS TABLE (event_at timestamptz, tie bigint, event jsonb)
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
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
$fn$;

-- 5 ─ Customers' own earlier preference changes ──────────────────────────────

-- Until now a customer's `sub` was uuid5(NAMESPACE_URL, 'tel:' || phone), and
-- their preference changes hold it in changed_by, so "you" (their sub now,
-- the random one) would no longer find them. Each such value is replaced by
-- the number's random subject (made here if the number has none yet), so the
-- label stays right and nothing derived from a number is kept. The numbers
-- are the registrations' own (a change by an earlier holder of a number no
-- registration has now stays "the dealership"). Applied twice, nothing is left
-- to map.
-- uuid5(NAMESPACE_URL, name) as Python's uuid.uuid5 makes it: SHA-1, which
-- PostgreSQL has no built-in for (pgcrypto is not everywhere), so written out
-- here. A pg_temp function: it leaves nothing behind once the session ends.
CREATE OR REPLACE FUNCTION pg_temp.regnotify_url_uuid5(p_name text)
RETURNS uuid
LANGUAGE plpgsql IMMUTABLE
AS $fn$
DECLARE
    m     bytea := '\x6ba7b8119dad11d180b400c04fd430c8'::bytea || convert_to(p_name, 'UTF8');
    ml    bigint := length(m) * 8;
    mask  constant bigint := 4294967295;
    h     bigint[] := ARRAY[1732584193, 4023233417, 2562383102, 271733878, 3285377520];
    w     bigint[];
    a bigint; b bigint; c bigint; d bigint; e bigint; f bigint; k bigint; t bigint;
    chunk int; i int; x bigint;
    out   bytea := ''::bytea;
BEGIN
    m := m || '\x80'::bytea;
    WHILE length(m) % 64 <> 56 LOOP
        m := m || '\x00'::bytea;
    END LOOP;
    m := m || int8send(ml);
    FOR chunk IN 0 .. length(m) / 64 - 1 LOOP
        w := ARRAY[]::bigint[];
        FOR i IN 0 .. 15 LOOP
            w[i] := (get_byte(m, chunk * 64 + i * 4)::bigint << 24)
                  | (get_byte(m, chunk * 64 + i * 4 + 1)::bigint << 16)
                  | (get_byte(m, chunk * 64 + i * 4 + 2)::bigint << 8)
                  | get_byte(m, chunk * 64 + i * 4 + 3)::bigint;
        END LOOP;
        FOR i IN 16 .. 79 LOOP
            x := w[i - 3] # w[i - 8] # w[i - 14] # w[i - 16];
            w[i] := ((x << 1) | (x >> 31)) & mask;
        END LOOP;
        a := h[1]; b := h[2]; c := h[3]; d := h[4]; e := h[5];
        FOR i IN 0 .. 79 LOOP
            IF i < 20 THEN
                f := (b & c) | ((~b & mask) & d); k := 1518500249;
            ELSIF i < 40 THEN
                f := b # c # d; k := 1859775393;
            ELSIF i < 60 THEN
                f := (b & c) | (b & d) | (c & d); k := 2400959708;
            ELSE
                f := b # c # d; k := 3395469782;
            END IF;
            t := ((((a << 5) | (a >> 27)) & mask) + f + e + k + w[i]) & mask;
            e := d; d := c; c := ((b << 30) | (b >> 2)) & mask; b := a; a := t;
        END LOOP;
        h[1] := (h[1] + a) & mask; h[2] := (h[2] + b) & mask; h[3] := (h[3] + c) & mask;
        h[4] := (h[4] + d) & mask; h[5] := (h[5] + e) & mask;
    END LOOP;
    FOR i IN 1 .. 4 LOOP
        out := out || substring(int8send(h[i]) FROM 5 FOR 4);
    END LOOP;
    -- Version 5, RFC 4122 variant.
    out := set_byte(out, 6, (get_byte(out, 6) & 15) | 80);
    out := set_byte(out, 8, (get_byte(out, 8) & 63) | 128);
    RETURN encode(out, 'hex')::uuid;
END
$fn$;

CREATE TEMP TABLE regnotify_legacy_subjects (phone text PRIMARY KEY, legacy text NOT NULL);
INSERT INTO pg_temp.regnotify_legacy_subjects (phone, legacy)
SELECT p.phone, pg_temp.regnotify_url_uuid5('tel:' || p.phone)::text
FROM (SELECT DISTINCT r.customer_phone AS phone
      FROM public.registrations AS r
      JOIN public.notification_pref_changes AS c ON c.registration_id = r.id
      WHERE c.changed_by_kind = 'customer' AND r.customer_phone IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM public.customer_subjects AS s
                        WHERE s.subject::text = c.changed_by)) AS p;
INSERT INTO public.customer_subjects (phone)
SELECT l.phone FROM pg_temp.regnotify_legacy_subjects AS l
WHERE EXISTS (SELECT 1 FROM public.notification_pref_changes AS c
              WHERE c.changed_by_kind = 'customer' AND c.changed_by = l.legacy)
ON CONFLICT (phone) DO NOTHING;
UPDATE public.notification_pref_changes AS c
SET changed_by = s.subject::text
FROM pg_temp.regnotify_legacy_subjects AS l
JOIN public.customer_subjects AS s ON s.phone = l.phone
WHERE c.changed_by_kind = 'customer' AND c.changed_by = l.legacy;
DROP TABLE pg_temp.regnotify_legacy_subjects;
DROP FUNCTION pg_temp.regnotify_url_uuid5(text);
