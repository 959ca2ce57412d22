-- Undo 25: the timeline's functions become LANGUAGE sql again, with the bodies
-- migration 25 wrapped, byte for byte. Only functions that carry its wrapper
-- are touched, so this runs twice, and leaves alone one a later migration
-- redefined.

DO $undo$
DECLARE
    f record;
    header text;
    body text;
    head_set text := E'\n#variable_conflict use_column\nBEGIN\n    RETURN QUERY';
    tail_set text := E'\n    ;\nEND\n';
    head_one text := E'\n#variable_conflict use_column\nBEGIN\n    RETURN (';
    tail_one text := E'\n    );\nEND\n';
BEGIN
    FOR f IN
        SELECT p.oid, p.prosrc, p.proretset
        FROM pg_catalog.pg_proc AS p
        JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
        JOIN pg_catalog.pg_language AS l ON l.oid = p.prolang
        WHERE n.nspname = 'public' AND l.lanname = 'plpgsql'
          AND p.proname IN ('notification_timeline', 'timeline_caller_is_customer',
                            'timeline_registration', 'timeline_stage_changes',
                            'timeline_messages', 'timeline_holds', 'timeline_fallbacks',
                            'timeline_preference_changes', 'timeline_replies')
    LOOP
        IF f.proretset AND pg_catalog.starts_with(f.prosrc, head_set)
                AND pg_catalog.right(f.prosrc, pg_catalog.length(tail_set)) = tail_set THEN
            body := pg_catalog.substr(f.prosrc, pg_catalog.length(head_set) + 1,
                pg_catalog.length(f.prosrc) - pg_catalog.length(head_set)
                - pg_catalog.length(tail_set));
        ELSIF NOT f.proretset AND pg_catalog.starts_with(f.prosrc, head_one)
                AND pg_catalog.right(f.prosrc, pg_catalog.length(tail_one)) = tail_one THEN
            body := pg_catalog.substr(f.prosrc, pg_catalog.length(head_one) + 1,
                pg_catalog.length(f.prosrc) - pg_catalog.length(head_one)
                - pg_catalog.length(tail_one));
        ELSE
            CONTINUE;  -- not migration 25's wrapper: left as it is
        END IF;
        header := pg_catalog.pg_get_functiondef(f.oid);
        header := pg_catalog.left(header, pg_catalog.strpos(header, E'\nAS $') - 1);
        header := pg_catalog.replace(header, E'\n LANGUAGE plpgsql\n', E'\n LANGUAGE sql\n');
        EXECUTE header || E'\nAS ' || pg_catalog.quote_literal(body || E'\n');
    END LOOP;
END
$undo$;
