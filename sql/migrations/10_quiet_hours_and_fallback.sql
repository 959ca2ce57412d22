-- 10 Quiet hours in the customer's own time zone, and the other channel when
-- one fails for good.
--
-- Quiet hours: a delivery claimed inside the customer's quiet window is
-- written `queued` and *held* (hold_reason = 'quiet_hours', held_until = the
-- window's opening in the customer's zone). The queue run releases it when its
-- time comes; nothing waits in the broker for hours. held_until and hold_zone
-- stay on the row after the release, as history; hold_reason is cleared.
--
-- Fallback: when a text fails for good (or an e-mail hard-bounces), the same
-- burst's row for the other channel -- the claim always writes one per channel,
-- `skipped` when the customer's preference or missing address left it out --
-- goes back to `queued` with fallback_for pointing at the failed delivery.
-- One row per (burst, channel) stays true, so "once per change" is the row's
-- own status guard, and uq_registration_notifications_fallback_for backs it.
--
-- Safe to apply twice; runs under psql -f, regnotify migrate and the Supabase CLI.

-- 1 ─ Settings ──────────────────────────────────────────────────────────────

ALTER TABLE public.notification_config
    -- 21:00-08:00 local; start = end means no quiet window.
    ADD COLUMN IF NOT EXISTS quiet_hours_start time NOT NULL DEFAULT time '21:00',
    ADD COLUMN IF NOT EXISTS quiet_hours_end time NOT NULL DEFAULT time '08:00',
    -- Channels the window applies to; '{}' turns quiet hours off.
    ADD COLUMN IF NOT EXISTS quiet_hours_channels text[] NOT NULL DEFAULT '{sms}',
    -- The dealership's zone, for customers without registrations.time_zone.
    ADD COLUMN IF NOT EXISTS default_time_zone text NOT NULL DEFAULT 'America/Chicago',
    -- Transactional messages: on unless turned off.
    ADD COLUMN IF NOT EXISTS fallback_enabled boolean NOT NULL DEFAULT true;

ALTER TABLE public.registrations
    ADD COLUMN IF NOT EXISTS time_zone text;

DO $settings$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'notification_config_quiet_hours_channels_check') THEN
        ALTER TABLE public.notification_config
            ADD CONSTRAINT notification_config_quiet_hours_channels_check
            CHECK (quiet_hours_channels <@ ARRAY['sms', 'email']::text[]);
    END IF;
END
$settings$;

-- A zone must be a real IANA name. `AT TIME ZONE` alone would also take
-- abbreviations ('CST' is a fixed -06:00, never daylight time) and POSIX
-- strings, so membership in pg_timezone_names is the test. That view reads
-- every zone file (~40 ms), so an Area/Location name that PostgreSQL can
-- load (`now() AT TIME ZONE`, microseconds) passes first: abbreviations and
-- POSIX strings never have that shape. A trigger rather than a CHECK, so the
-- error names the column, the value and the fix.
CREATE OR REPLACE FUNCTION public.check_time_zone_name()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
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
$fn$;

DROP TRIGGER IF EXISTS trg_check_default_time_zone ON public.notification_config;
CREATE TRIGGER trg_check_default_time_zone
    BEFORE INSERT OR UPDATE OF default_time_zone ON public.notification_config
    FOR EACH ROW EXECUTE FUNCTION public.check_time_zone_name('default_time_zone');

DROP TRIGGER IF EXISTS trg_check_time_zone_insert ON public.registrations;
CREATE TRIGGER trg_check_time_zone_insert
    BEFORE INSERT ON public.registrations
    FOR EACH ROW WHEN (NEW.time_zone IS NOT NULL)
    EXECUTE FUNCTION public.check_time_zone_name('time_zone');

DROP TRIGGER IF EXISTS trg_check_time_zone_update ON public.registrations;
CREATE TRIGGER trg_check_time_zone_update
    BEFORE UPDATE OF time_zone ON public.registrations
    FOR EACH ROW WHEN (NEW.time_zone IS DISTINCT FROM OLD.time_zone AND NEW.time_zone IS NOT NULL)
    EXECUTE FUNCTION public.check_time_zone_name('time_zone');

-- 2 ─ When a quiet window opens ─────────────────────────────────────────────

-- The instant the quiet window that contains p_at opens again, in p_zone's
-- local time; NULL when p_at is outside the window (or there is none).
-- Local date + local end time, converted back through the zone: so a night
-- that crosses a daylight-saving change is 9 or 11 hours long, not 10.
CREATE OR REPLACE FUNCTION public.quiet_hours_release_at(
    p_at timestamptz, p_zone text, p_start time, p_end time)
RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
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
$fn$;

-- 3 ─ Holds, supersession and fallback on the delivery rows ─────────────────

ALTER TABLE public.registration_notifications
    ADD COLUMN IF NOT EXISTS held_until timestamptz,
    ADD COLUMN IF NOT EXISTS hold_reason text,
    ADD COLUMN IF NOT EXISTS hold_zone text,
    ADD COLUMN IF NOT EXISTS fallback_for bigint;

-- `regnotify send --now`: the burst's deliveries ignore quiet hours.
ALTER TABLE public.notification_queue
    ADD COLUMN IF NOT EXISTS bypass_quiet_hours boolean NOT NULL DEFAULT false;

DO $holds$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'registration_notifications_hold_reason_check') THEN
        ALTER TABLE public.registration_notifications
            ADD CONSTRAINT registration_notifications_hold_reason_check
            CHECK (hold_reason IN ('quiet_hours'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'registration_notifications_fallback_for_fkey') THEN
        ALTER TABLE public.registration_notifications
            ADD CONSTRAINT registration_notifications_fallback_for_fkey
            FOREIGN KEY (fallback_for) REFERENCES public.registration_notifications (id)
            ON DELETE SET NULL;
    END IF;
    -- 'superseded': a held message replaced by a newer burst's (one text per morning).
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'registration_notifications_skip_reason_check'
                     AND pg_get_constraintdef(oid) LIKE '%superseded%') THEN
        ALTER TABLE public.registration_notifications
            DROP CONSTRAINT IF EXISTS registration_notifications_skip_reason_check;
        ALTER TABLE public.registration_notifications
            ADD CONSTRAINT registration_notifications_skip_reason_check
            CHECK (skip_reason IN ('preference', 'silenced', 'no_contact', 'opted_out',
                                   'no_net_change', 'superseded'));
    END IF;
END
$holds$;

-- Once per failed delivery, whatever races.
CREATE UNIQUE INDEX IF NOT EXISTS uq_registration_notifications_fallback_for
    ON public.registration_notifications (fallback_for)
    WHERE fallback_for IS NOT NULL;

-- The release reads "held, opening soonest first"; the wake-up reads its min.
CREATE INDEX IF NOT EXISTS ix_registration_notifications_held
    ON public.registration_notifications (held_until)
    WHERE hold_reason IS NOT NULL;

-- The claim's "one text per morning" looks up the held rows of the
-- registrations it claims: a probe of this (usually empty) index each, where
-- the in-flight index would walk every queued delivery of a backlog.
CREATE INDEX IF NOT EXISTS ix_registration_notifications_held_registration
    ON public.registration_notifications (registration_id, channel)
    WHERE hold_reason IS NOT NULL;

-- 4 ─ Privileges ────────────────────────────────────────────────────────────

-- Trigger functions run without an EXECUTE check; nobody needs to call it.
REVOKE ALL ON FUNCTION public.check_time_zone_name()
    FROM PUBLIC, anon, authenticated, service_role;
-- Pure arithmetic on its arguments: the workers (and staff in SQL) may call it.
REVOKE ALL ON FUNCTION public.quiet_hours_release_at(timestamptz, text, time, time)
    FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.quiet_hours_release_at(timestamptz, text, time, time)
    TO service_role;
