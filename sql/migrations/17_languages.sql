-- 17 Messages in the customer's language: English or Spanish.
--
--   * registrations.language: 'en', 'es', or NULL for
--     notification_config.default_language ('en' unless set);
--   * registration_stages.label_es: the Spanish stage label (NULL: the
--     English label is used);
--   * registration_notifications.language: the language a message went in,
--     written when the send claims it (status and the timeline show it);
--   * a customer may change language as well as notification_pref on their
--     own registrations, and nothing else.
--
-- Safe to apply twice; runs under psql -f, regnotify migrate and the Supabase CLI.

-- 1 ─ Columns ────────────────────────────────────────────────────────────────

ALTER TABLE public.notification_config
    ADD COLUMN IF NOT EXISTS default_language text NOT NULL DEFAULT 'en';
ALTER TABLE public.registrations
    ADD COLUMN IF NOT EXISTS language text;
ALTER TABLE public.registration_notifications
    ADD COLUMN IF NOT EXISTS language text;
ALTER TABLE public.registration_stages
    ADD COLUMN IF NOT EXISTS label_es text;

DO $checks$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                   WHERE conname = 'notification_config_default_language_check') THEN
        ALTER TABLE public.notification_config
            ADD CONSTRAINT notification_config_default_language_check
            CHECK (default_language IN ('en', 'es'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                   WHERE conname = 'registrations_language_check') THEN
        ALTER TABLE public.registrations
            ADD CONSTRAINT registrations_language_check
            CHECK (language IN ('en', 'es'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                   WHERE conname = 'registration_notifications_language_check') THEN
        ALTER TABLE public.registration_notifications
            ADD CONSTRAINT registration_notifications_language_check
            CHECK (language IN ('en', 'es'));
    END IF;
END
$checks$;

-- Spanish labels go into texts: no á, í, ó or ú, which are not in GSM-7 and
-- would make the whole text UCS-2 (70 characters a segment instead of 160).
-- Only filled where empty, so a dealership's own wording survives re-applying.
UPDATE public.registration_stages AS s
SET label_es = v.label_es
FROM (VALUES
    ('sale_complete',       'Venta completada'),
    ('documents_collected', 'Documentos recibidos'),
    ('submitted_to_dmv',    'Enviado al DMV'),
    ('dmv_processing',      'En proceso en el DMV'),
    ('sticker_ready',       'Placas y etiqueta listas'),
    ('sticker_delivered',   'Placas y etiqueta entregadas'),
    ('needs_attention',     'Necesitamos su ayuda')
) AS v (stage, label_es)
WHERE s.stage = v.stage
  AND s.label_es IS NULL;

-- 2 ─ The customer's own language ───────────────────────────────────────────

-- As in 12, with language beside notification_pref: a customer (authenticated
-- without the admin claim) may change those two columns of their own rows
-- and nothing else. SECURITY INVOKER: it must see the caller's role.
CREATE OR REPLACE FUNCTION public.registrations_customer_guard()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $fn$
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
$fn$;

-- 12 fires the guard for the API's callers and for a change of preference;
-- a change of language by anyone else also moves updated_at.
DROP TRIGGER IF EXISTS registrations_customer_guard ON public.registrations;
CREATE TRIGGER registrations_customer_guard
    BEFORE UPDATE ON public.registrations
    FOR EACH ROW
    WHEN (current_user = 'authenticated'
          OR OLD.notification_pref IS DISTINCT FROM NEW.notification_pref
          OR OLD.language IS DISTINCT FROM NEW.language)
    EXECUTE FUNCTION public.registrations_customer_guard();

-- CREATE OR REPLACE keeps the function's privileges; restated so this file
-- alone leaves it right on a database with Supabase's default privileges.
REVOKE ALL ON FUNCTION public.registrations_customer_guard()
    FROM PUBLIC, anon, authenticated, service_role;

-- 12 granted UPDATE column by column on what existed then; the new column
-- needs its own grant (the guard above keeps customers to it and the
-- preference; RLS keeps them to their own rows).
GRANT UPDATE (language) ON public.registrations TO authenticated;
