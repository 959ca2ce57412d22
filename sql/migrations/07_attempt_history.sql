-- 07 A re-drive keeps the attempt history.
--
-- `regnotify retry-failed` gives a failed delivery a fresh retry budget. It
-- used to do that by setting attempts back to 0, so the timeline forgot the
-- attempts that failed. attempts now only grows; the budget counts the
-- attempts made since the last re-drive.

ALTER TABLE public.registration_notifications
    ADD COLUMN IF NOT EXISTS attempts_at_redrive integer NOT NULL DEFAULT 0;
