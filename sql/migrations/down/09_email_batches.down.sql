-- drops-data: the workers' coordination state (coordination_slots) and each e-mail delivery's batch id and parked flag (registration_notifications.email_batch_id, parked)
-- Undo of 09.

DROP TABLE IF EXISTS public.coordination_slots;
DROP INDEX IF EXISTS public.ix_registration_notifications_parked;
DROP INDEX IF EXISTS public.ix_registration_notifications_email_batch;
-- Only what regnotify added: a column the dealership's own table already had (adopted) stays, with its values.
DO $undo$
DECLARE
    v_col     text;
    v_adopted boolean;
BEGIN
    FOREACH v_col IN ARRAY ARRAY['email_batch_id', 'parked'] LOOP
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
