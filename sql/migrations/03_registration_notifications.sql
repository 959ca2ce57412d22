-- 03 The delivery audit as the seed plan assumed it: one row per message a
-- customer was (or was not) sent. 04 extends it for the notification system.

CREATE TABLE IF NOT EXISTS public.registration_notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registration_id uuid NOT NULL REFERENCES public.registrations (id) ON DELETE CASCADE,
    channel         text NOT NULL CHECK (channel IN ('sms', 'email')),
    recipient       text,
    status          text NOT NULL DEFAULT 'queued' CHECK (status IN (
                        'queued', 'sending', 'sent', 'delivered', 'undelivered',
                        'failed', 'bounced', 'complained', 'skipped')),
    attempts        int  NOT NULL DEFAULT 0,
    error_code      text,
    error_message   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    delivered_at    timestamptz
);

CREATE INDEX IF NOT EXISTS ix_registration_notifications_registration
    ON public.registration_notifications (registration_id, created_at);
