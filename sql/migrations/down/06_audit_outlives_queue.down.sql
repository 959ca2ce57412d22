-- Undo of 06: the delivery history hangs off the queue again (ON DELETE
-- CASCADE). No data is lost. Where deliveries point at queue rows already
-- pruned, the key is added NOT VALID (it holds for new rows) and a NOTICE
-- says so, rather than failing the undo.

DO $fk$
BEGIN
    IF pg_catalog.to_regclass('public.notification_queue') IS NULL
       OR EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                  WHERE conname = 'registration_notifications_queue_id_fkey'
                    AND conrelid = 'public.registration_notifications'::pg_catalog.regclass) THEN
        RETURN;
    END IF;
    ALTER TABLE public.registration_notifications
        ADD CONSTRAINT registration_notifications_queue_id_fkey
        FOREIGN KEY (queue_id) REFERENCES public.notification_queue (id) ON DELETE CASCADE
        NOT VALID;
    BEGIN
        ALTER TABLE public.registration_notifications
            VALIDATE CONSTRAINT registration_notifications_queue_id_fkey;
    EXCEPTION WHEN foreign_key_violation THEN
        RAISE NOTICE 'regnotify: deliveries refer to pruned queue rows: '
                     'registration_notifications_queue_id_fkey stays NOT VALID';
    END;
END
$fk$;
