-- 01 Compatibility layer: what Supabase provides and vanilla PostgreSQL lacks.
--
-- On Supabase every object below already exists and belongs to Supabase's own
-- roles, so each one is created only where it is missing; replacing Supabase's
-- auth.jwt() would fail (not our function) or, worse, change its behaviour.

DO $compat$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        -- BYPASSRLS needs a superuser; a plain owner still gets the role, and
        -- the policies in 04 grant service_role what it needs explicitly.
        BEGIN
            CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
        EXCEPTION WHEN insufficient_privilege THEN
            CREATE ROLE service_role NOLOGIN NOINHERIT;
            RAISE NOTICE 'regnotify: service_role created without BYPASSRLS (not a superuser)';
        END;
    END IF;
END
$compat$;

CREATE SCHEMA IF NOT EXISTS auth;

DO $jwt$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'auth' AND p.proname = 'jwt'
    ) THEN
        -- The same body Supabase ships: PostgREST puts the verified claims in
        -- request.jwt.claims (older versions used request.jwt.claim).
        EXECUTE $fn$
            CREATE FUNCTION auth.jwt() RETURNS jsonb
            LANGUAGE sql STABLE
            AS $body$
                SELECT coalesce(
                    nullif(current_setting('request.jwt.claim', true), ''),
                    nullif(current_setting('request.jwt.claims', true), '')
                )::jsonb
            $body$
        $fn$;
    END IF;
END
$jwt$;

DO $grants$
BEGIN
    GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
    GRANT EXECUTE ON FUNCTION auth.jwt() TO anon, authenticated, service_role;
EXCEPTION WHEN insufficient_privilege THEN
    -- Supabase owns schema auth and has granted these already.
    RAISE NOTICE 'regnotify: auth schema grants left to their owner';
END
$grants$;
