-- drops-data: the SMS opt-outs (sms_opt_outs: who texted STOP) and the record of provider webhooks already applied (webhook_events)
-- Undo of 05.

DROP TABLE IF EXISTS public.sms_opt_outs;
DROP TABLE IF EXISTS public.webhook_events;
