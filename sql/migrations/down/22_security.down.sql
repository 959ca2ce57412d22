-- drops-data: the random session subjects (customers then get new ones at their next sign-in), the record of inbound MessageSids seen (a pruned STOP could be replayed again), the staff digests' hourly cap setting and which digests went in a summary
-- Undo of 22_security.sql.

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
        'changed_by', CASE WHEN c.changed_by_kind = 'customer'
                                OR NOT public.timeline_caller_is_customer()
                           THEN c.changed_by END)
    FROM public.notification_pref_changes AS c
    WHERE c.registration_id = p_registration_id
$fn$;

DROP INDEX IF EXISTS public.ix_reply_digests_claimed;
ALTER TABLE public.reply_digests
    DROP COLUMN IF EXISTS in_summary,
    DROP COLUMN IF EXISTS claimed_at;
ALTER TABLE public.notification_config
    DROP CONSTRAINT IF EXISTS notification_config_staff_digest_cap_positive,
    DROP COLUMN IF EXISTS staff_digest_hourly_cap;
DROP TABLE IF EXISTS public.seen_message_sids;
-- Customers' preference changes go back to the subject regnotify's sessions
-- will use again, uuid5(NAMESPACE_URL, 'tel:' || phone) (see 22, section 5).
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

UPDATE public.notification_pref_changes AS c
SET changed_by = pg_temp.regnotify_url_uuid5('tel:' || s.phone)::text
FROM public.customer_subjects AS s
WHERE c.changed_by_kind = 'customer' AND c.changed_by = s.subject::text;
DROP FUNCTION pg_temp.regnotify_url_uuid5(text);

DROP TABLE IF EXISTS public.customer_subjects;
