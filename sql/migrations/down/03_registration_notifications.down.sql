-- drops-data: the delivery history (registration_notifications), where regnotify created it
-- Undo of 03.

-- Only where regnotify created it: the seed's own table (adopted) stays, rows and all.
DO $undo$
DECLARE
    v_adopted boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted USING 'rel|public.registration_notifications';
    END IF;
    IF NOT v_adopted THEN
        DROP TABLE IF EXISTS public.registration_notifications;
    END IF;
END
$undo$;
