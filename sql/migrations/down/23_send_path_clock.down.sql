-- Undo 23: the send path's movable clock. No data lives in it.
DROP FUNCTION IF EXISTS public.regnotify_now();
