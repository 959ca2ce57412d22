-- drops-data: registrations.stage_changed_at, when each registration's stage last changed
-- Undoes 26_stage_changed_at.sql.

DROP TRIGGER IF EXISTS registrations_stage_changed_at ON public.registrations;
DROP FUNCTION IF EXISTS public.registrations_stage_changed_at();
ALTER TABLE public.registrations DROP COLUMN IF EXISTS stage_changed_at;
