-- drops-data: how many attempts each delivery had when it was last re-driven (registration_notifications.attempts_at_redrive)
-- Undo of 07.

-- Only what regnotify added: a column the dealership's own table already had (adopted) stays, with its values.
DO $undo$
DECLARE
    v_col     text;
    v_adopted boolean;
BEGIN
    FOREACH v_col IN ARRAY ARRAY['attempts_at_redrive'] LOOP
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
