-- drops-data: each customer's language (registrations.language), the language each message went in (registration_notifications.language), the Spanish stage labels (registration_stages.label_es) and notification_config.default_language
-- Undo of 17: back to English only.

-- 12's guard and trigger: a customer may change notification_pref only.
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

DROP TRIGGER IF EXISTS registrations_customer_guard ON public.registrations;
CREATE TRIGGER registrations_customer_guard
    BEFORE UPDATE ON public.registrations
    FOR EACH ROW
    WHEN (current_user = 'authenticated'
          OR OLD.notification_pref IS DISTINCT FROM NEW.notification_pref)
    EXECUTE FUNCTION public.registrations_customer_guard();

-- The CHECKs go with their columns; where the column was the dealership's, only the CHECK.
DO $undo$
DECLARE
    v_adopted boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted USING 'con|public.registrations.registrations_language_check';
    END IF;
    IF NOT v_adopted THEN
        ALTER TABLE IF EXISTS public.registrations
            DROP CONSTRAINT IF EXISTS registrations_language_check;
    END IF;
END
$undo$;

-- The same for the delivery history's language.
DO $undo$
DECLARE
    v_adopted boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted USING 'con|public.registration_notifications.registration_notifications_language_check';
    END IF;
    IF NOT v_adopted THEN
        ALTER TABLE IF EXISTS public.registration_notifications
            DROP CONSTRAINT IF EXISTS registration_notifications_language_check;
    END IF;
END
$undo$;

-- Only what regnotify added: a column the dealership's own table already had (adopted) stays, with its values.
DO $undo$
DECLARE
    v_col     text;
    v_adopted boolean;
BEGIN
    FOREACH v_col IN ARRAY ARRAY['language'] LOOP
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

-- Only what regnotify added: a column the dealership's own table already had (adopted) stays, with its values.
DO $undo$
DECLARE
    v_col     text;
    v_adopted boolean;
BEGIN
    FOREACH v_col IN ARRAY ARRAY['language'] LOOP
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

ALTER TABLE IF EXISTS public.registration_stages DROP COLUMN IF EXISTS label_es;
ALTER TABLE IF EXISTS public.notification_config DROP COLUMN IF EXISTS default_language;
