-- Undo of 01. What 01 creates is Supabase's on Supabase (schema auth,
-- auth.jwt(), the API roles), so it goes only where the runner recorded 01
-- creating it. Roles belong to the whole cluster: the runner drops the ones
-- 01 created, and keeps (and says so) one another database still uses.

-- auth.jwt(): only regnotify's stand-in.
DO $undo$
DECLARE
    v_created boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.created(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.created($1)' INTO v_created USING 'fn|auth.jwt()';
    END IF;
    IF v_created THEN
        DROP FUNCTION IF EXISTS auth.jwt();
    END IF;
END
$undo$;

-- Schema auth: only where 01 created it (and it is empty).
DO $undo$
DECLARE
    v_created boolean := false;
BEGIN
    IF pg_catalog.to_regprocedure('regnotify.created(text)') IS NOT NULL THEN
        EXECUTE 'SELECT regnotify.created($1)' INTO v_created USING 'schema|auth';
    END IF;
    IF v_created THEN
        DROP SCHEMA IF EXISTS auth;
    END IF;
END
$undo$;
