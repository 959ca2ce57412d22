-- 05 What delivery needs beside the queue: SMS opt-outs (a carrier-level STOP
-- or Twilio's 21610) and the record of provider webhooks already applied.

CREATE TABLE IF NOT EXISTS public.sms_opt_outs (
    phone      text PRIMARY KEY CHECK (phone ~ '^\+[1-9][0-9]{6,14}$'),
    opted_out  boolean NOT NULL DEFAULT true,
    -- 'inbound:STOP', 'twilio:21610', ... so a person can see why.
    source     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Svix (Resend) and Twilio retry webhooks; applying one twice must be a no-op.
CREATE TABLE IF NOT EXISTS public.webhook_events (
    provider    text NOT NULL,
    event_id    text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);

ALTER TABLE public.sms_opt_outs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.webhook_events ENABLE ROW LEVEL SECURITY;
REVOKE ALL ON public.sms_opt_outs, public.webhook_events FROM anon, authenticated;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.sms_opt_outs, public.webhook_events TO service_role;

DROP POLICY IF EXISTS service_role_all ON public.sms_opt_outs;
CREATE POLICY service_role_all ON public.sms_opt_outs
    FOR ALL TO service_role USING (true) WITH CHECK (true);
DROP POLICY IF EXISTS service_role_all ON public.webhook_events;
CREATE POLICY service_role_all ON public.webhook_events
    FOR ALL TO service_role USING (true) WITH CHECK (true);
