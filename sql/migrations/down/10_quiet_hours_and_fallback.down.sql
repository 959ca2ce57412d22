-- drops-data: quiet-hours holds and fallback links of the delivery history (held_until, hold_reason, hold_zone, fallback_for), each customer's time zone (registrations.time_zone), notification_queue.bypass_quiet_hours and the quiet-hours and fallback settings
-- Undo of 10. A delivery skipped as 'superseded' does not fit 04's
-- skip_reason CHECK: the undo then fails and changes nothing (fix or
-- delete those rows first).

DROP TRIGGER IF EXISTS trg_check_default_time_zone ON public.notification_config;
DROP TRIGGER IF EXISTS trg_check_time_zone_insert ON public.registrations;
DROP TRIGGER IF EXISTS trg_check_time_zone_update ON public.registrations;
DROP FUNCTION IF EXISTS public.check_time_zone_name();
DROP FUNCTION IF EXISTS public.quiet_hours_release_at(timestamptz, text, time, time);

DROP INDEX IF EXISTS public.uq_registration_notifications_fallback_for;
DROP INDEX IF EXISTS public.ix_registration_notifications_held;
DROP INDEX IF EXISTS public.ix_registration_notifications_held_registration;
ALTER TABLE IF EXISTS public.registration_notifications
    DROP CONSTRAINT IF EXISTS registration_notifications_fallback_for_fkey,
    DROP CONSTRAINT IF EXISTS registration_notifications_hold_reason_check;

-- 04's skip reasons (no 'superseded').
DO $skip$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
               WHERE conname = 'registration_notifications_skip_reason_check'
                 AND pg_catalog.pg_get_constraintdef(oid) LIKE '%superseded%') THEN
        ALTER TABLE public.registration_notifications
            DROP CONSTRAINT registration_notifications_skip_reason_check;
        ALTER TABLE public.registration_notifications
            ADD CONSTRAINT registration_notifications_skip_reason_check
            CHECK (skip_reason IN ('preference', 'silenced', 'no_contact', 'opted_out',
                                   'no_net_change'));
    END IF;
END
$skip$;

-- Only what regnotify added: a column the dealership's own table already had (adopted) stays, with its values.
DO $undo$
DECLARE
    v_col     text;
    v_adopted boolean;
BEGIN
    FOREACH v_col IN ARRAY ARRAY['held_until', 'hold_reason', 'hold_zone', 'fallback_for'] LOOP
        v_adopted := false;
        IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
            EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted
                USING 'col|public.registration_notifications.' || v_col;
        END IF;
        IF NOT v_adopted THEN
            EXECUTE pg_catalog.format('ALTER TABLE IF EXISTS public.registration_notifications DROP COLUMN IF EXISTS %I',
                                      v_col);
        END IF;
    END LOOP;
END
$undo$;

-- Only what regnotify added: a column the dealership's own table already had (adopted) stays, with its values.
DO $undo$
DECLARE
    v_col     text;
    v_adopted boolean;
BEGIN
    FOREACH v_col IN ARRAY ARRAY['time_zone'] LOOP
        v_adopted := false;
        IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
            EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted
                USING 'col|public.registrations.' || v_col;
        END IF;
        IF NOT v_adopted THEN
            EXECUTE pg_catalog.format('ALTER TABLE IF EXISTS public.registrations DROP COLUMN IF EXISTS %I',
                                      v_col);
        END IF;
    END LOOP;
END
$undo$;

ALTER TABLE IF EXISTS public.notification_queue DROP COLUMN IF EXISTS bypass_quiet_hours;
ALTER TABLE IF EXISTS public.notification_config
    DROP COLUMN IF EXISTS quiet_hours_start,
    DROP COLUMN IF EXISTS quiet_hours_end,
    DROP COLUMN IF EXISTS quiet_hours_channels,
    DROP COLUMN IF EXISTS default_time_zone,
    DROP COLUMN IF EXISTS fallback_enabled;
