-- drops-data: the Idempotency-Key each staff reply digest was sent under (reply_digests.idempotency_key)
-- Undo 23: the send path's movable clock and the digests' remembered keys.
ALTER TABLE public.reply_digests DROP COLUMN IF EXISTS idempotency_key;
DROP FUNCTION IF EXISTS public.quiet_hours_release_now(text, time, time);
DROP FUNCTION IF EXISTS public.regnotify_now();
