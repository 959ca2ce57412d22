-- drops-data: the random session subjects (customers then get new ones at their next sign-in), the record of inbound MessageSids seen (a pruned STOP could be replayed again), the staff digests' hourly cap setting and which digests went in a summary
-- Undo of 22_security.sql.

CREATE OR REPLACE FUNCTION public.timeline_preference_changes(p_registration_id uuid)
RETURNS TABLE (event_at timestamptz, tie bigint, event jsonb)
LANGUAGE sql STABLE
SET search_path = ''
AS $fn$
    SELECT c.changed_at, c.id, pg_catalog.jsonb_build_object(
        'kind', 'preference_change',
        'at', c.changed_at,
        'id', c.id,
        'changed_at', c.changed_at,
        'old_pref', c.old_pref,
        'new_pref', c.new_pref,
        'changed_by_kind', c.changed_by_kind,
        'changed_by', CASE WHEN c.changed_by_kind = 'customer'
                                OR NOT public.timeline_caller_is_customer()
                           THEN c.changed_by END)
    FROM public.notification_pref_changes AS c
    WHERE c.registration_id = p_registration_id
$fn$;

DROP INDEX IF EXISTS public.ix_reply_digests_claimed;
ALTER TABLE public.reply_digests
    DROP COLUMN IF EXISTS in_summary,
    DROP COLUMN IF EXISTS claimed_at;
ALTER TABLE public.notification_config
    DROP CONSTRAINT IF EXISTS notification_config_staff_digest_cap_positive,
    DROP COLUMN IF EXISTS staff_digest_hourly_cap;
DROP TABLE IF EXISTS public.seen_message_sids;
DROP TABLE IF EXISTS public.customer_subjects;
