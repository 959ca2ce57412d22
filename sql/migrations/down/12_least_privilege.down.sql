-- drops-data: the record of who changed each customer's notification preference (notification_pref_changes)
-- Undo of 12: 04's wide grants and policies again. 12's move of pg_net and
-- pg_cron out of schema public is not reversed (harmless, and reinstalling
-- an extension loses its state); neither is its lock on an old ledger.

DROP TRIGGER IF EXISTS registrations_pref_audit ON public.registrations;
DROP TRIGGER IF EXISTS registrations_customer_guard ON public.registrations;
DROP FUNCTION IF EXISTS public.record_notification_pref_change();
DROP FUNCTION IF EXISTS public.registrations_customer_guard();
DROP TABLE IF EXISTS public.notification_pref_changes;

-- Policies: 04's on registrations and the delivery history.
DROP POLICY IF EXISTS authenticated_select ON public.registrations;
DROP POLICY IF EXISTS authenticated_update ON public.registrations;
DROP POLICY IF EXISTS admin_inserts ON public.registrations;
DROP POLICY IF EXISTS admin_deletes ON public.registrations;
DROP POLICY IF EXISTS customer_reads_own_registrations ON public.registrations;
CREATE POLICY customer_reads_own_registrations ON public.registrations
    FOR SELECT TO authenticated
    USING (customer_phone = public.jwt_customer_phone());
DROP POLICY IF EXISTS admin_manages_registrations ON public.registrations;
CREATE POLICY admin_manages_registrations ON public.registrations
    FOR ALL TO authenticated
    USING (public.jwt_is_admin()) WITH CHECK (public.jwt_is_admin());

DROP POLICY IF EXISTS authenticated_select ON public.registration_notifications;
DROP POLICY IF EXISTS customer_reads_own_notifications ON public.registration_notifications;
CREATE POLICY customer_reads_own_notifications ON public.registration_notifications
    FOR SELECT TO authenticated
    USING (registration_id IN (
        SELECT r.id FROM public.registrations r
        WHERE r.customer_phone = public.jwt_customer_phone()));
DROP POLICY IF EXISTS admin_reads_notifications ON public.registration_notifications;
CREATE POLICY admin_reads_notifications ON public.registration_notifications
    FOR SELECT TO authenticated
    USING (public.jwt_is_admin());

-- Grants: 12 granted UPDATE on registrations column by column.
DO $columns$
DECLARE
    v_column name;
BEGIN
    FOR v_column IN
        SELECT a.attname FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = 'public.registrations'::pg_catalog.regclass
          AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
    LOOP
        EXECUTE pg_catalog.format('REVOKE UPDATE (%I) ON public.registrations FROM authenticated',
                                  v_column);
    END LOOP;
END
$columns$;

-- 04's grants, as 04 gave them. (On a database whose default privileges
-- grant more, 04 had more too; 12 takes it away again when re-applied.)
GRANT SELECT, INSERT, UPDATE, DELETE
    ON public.registrations, public.registration_notifications, public.notification_queue
    TO anon, authenticated, service_role;
GRANT SELECT ON public.registration_stages TO anon, authenticated, service_role;
GRANT USAGE ON SEQUENCE public.notification_queue_id_seq TO authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.jwt_customer_phone(), public.jwt_is_admin()
    TO PUBLIC, anon, authenticated, service_role;
GRANT SELECT, UPDATE ON public.notification_config TO service_role;
GRANT EXECUTE ON FUNCTION public.notification_tick() TO service_role;
