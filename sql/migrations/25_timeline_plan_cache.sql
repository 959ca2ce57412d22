-- 25: the timeline's functions keep their plans (docs/relay-performance.md).
--
-- notification_timeline, the seven timeline_* functions it unions and
-- timeline_caller_is_customer are LANGUAGE sql with `SET search_path = ''`.
-- A SQL function with a SET clause is never inlined, and PostgreSQL before
-- 18 plans its body again on every call: GET /api/registrations/{id}/timeline
-- cost the database about 3 ms of CPU, almost all of it planning (one
-- backend, the same call 300 times: 3.0 ms as SQL, 0.8-1.0 ms as PL/pgSQL).
-- PL/pgSQL caches each statement's plan for the session, and the relay's
-- pooled connections live for an hour.
--
-- Each function is rewritten from its CURRENT body, whatever migration last
-- defined it, unchanged: `RETURN QUERY <body>` for the set-returning ones,
-- `RETURN (<body>)` for the scalar ones (no row: NULL, as the SQL function
-- answered). Same name, arguments, result, volatility, search_path, and
-- (CREATE OR REPLACE keeps them) owner and grants. A function already in
-- PL/pgSQL is left alone, so the file applies twice. The undo
-- (down/25_timeline_plan_cache.down.sql) turns them back into the SQL
-- functions they were, byte for byte.

DO $migration$
DECLARE
    f record;
    header text;
    body text;
    wrapped text;
BEGIN
    FOR f IN
        SELECT p.oid, p.prosrc, p.proretset
        FROM pg_catalog.pg_proc AS p
        JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
        JOIN pg_catalog.pg_language AS l ON l.oid = p.prolang
        WHERE n.nspname = 'public' AND l.lanname = 'sql'
          AND p.proname IN ('notification_timeline', 'timeline_caller_is_customer',
                            'timeline_registration', 'timeline_stage_changes',
                            'timeline_messages', 'timeline_holds', 'timeline_fallbacks',
                            'timeline_preference_changes', 'timeline_replies')
    LOOP
        -- pg_get_functiondef's own header (name, arguments, result,
        -- volatility, SET clauses quoted as they must be) with the language
        -- changed; the body follows.
        header := pg_catalog.pg_get_functiondef(f.oid);
        header := pg_catalog.left(header, pg_catalog.strpos(header, E'\nAS $') - 1);
        header := pg_catalog.replace(header, E'\n LANGUAGE sql\n', E'\n LANGUAGE plpgsql\n');
        -- One statement without its closing semicolon; the newline before
        -- what follows keeps a trailing -- comment from swallowing it.
        body := pg_catalog.rtrim(f.prosrc, E' \t\r\n;');
        IF f.proretset THEN
            wrapped := E'\n#variable_conflict use_column\nBEGIN\n    RETURN QUERY'
                       || body || E'\n    ;\nEND\n';
        ELSE
            wrapped := E'\n#variable_conflict use_column\nBEGIN\n    RETURN ('
                       || body || E'\n    );\nEND\n';
        END IF;
        EXECUTE header || E'\nAS ' || pg_catalog.quote_literal(wrapped);
    END LOOP;
END
$migration$;
