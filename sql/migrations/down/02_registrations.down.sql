-- drops-data: the registrations (registrations) and the stage labels (registration_stages), where regnotify created them
-- Undo of 02. Where the dealership had either table before regnotify
-- (adopted), it stays, rows and all.

-- registrations: only where regnotify created it.
DO $undo$
DECLARE
    v_adopted boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted USING 'rel|public.registrations';
    END IF;
    IF NOT v_adopted THEN
        DROP TABLE IF EXISTS public.registrations;
    END IF;
END
$undo$;

-- registration_stages: the same.
DO $undo$
DECLARE
    v_adopted boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.adopted(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.adopted($1)' INTO v_adopted USING 'rel|public.registration_stages';
    END IF;
    IF NOT v_adopted THEN
        DROP TABLE IF EXISTS public.registration_stages;
    END IF;
END
$undo$;
