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
