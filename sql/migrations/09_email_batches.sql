-- 09 Resend batches, and coordination state that does not need Redis.
--
-- email_batch_id: the batch an e-mail delivery was last claimed into. It is
-- written before POST /emails/batch is called, so a retry of that batch sends
-- exactly the same members under the same Idempotency-Key (derived from the
-- id); a batch whose membership changes gets a new id, hence a new key.
--
-- coordination_slots: when no Redis is configured for coordination (the
-- broker is RabbitMQ and COORDINATION_REDIS_URL is unset), every worker
-- shares the provider rate limits, the tick marker and the wake-up time
-- through this small table instead. One row per name; `value` is an epoch
-- time in seconds (a GCRA's theoretical arrival time, or an expiry).

ALTER TABLE public.registration_notifications
    ADD COLUMN IF NOT EXISTS email_batch_id text;

-- parked: no task waits in the broker for this delivery; the queue run
-- publishes one when next_attempt_at comes within reach. Long waits (a rate
-- slot or a backoff beyond a minute) park, because a countdown is an
-- unacknowledged broker message (Redis visibility_timeout, RabbitMQ
-- consumer_timeout) and would be redelivered or cut off.
ALTER TABLE public.registration_notifications
    ADD COLUMN IF NOT EXISTS parked boolean NOT NULL DEFAULT false;

CREATE INDEX IF NOT EXISTS ix_registration_notifications_parked
    ON public.registration_notifications (next_attempt_at)
    WHERE parked;

CREATE INDEX IF NOT EXISTS ix_registration_notifications_email_batch
    ON public.registration_notifications (email_batch_id)
    WHERE email_batch_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS public.coordination_slots (
    name       text PRIMARY KEY,
    value      double precision NOT NULL DEFAULT 0,
    -- A rate limit's departures within the last second (the departure gate).
    recent     double precision[] NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE public.coordination_slots ENABLE ROW LEVEL SECURITY;

-- Only the workers (service_role, or the owner they connect as) touch it;
-- nothing about it is a customer's business.
REVOKE ALL ON public.coordination_slots FROM PUBLIC;
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON public.coordination_slots FROM %I', r);
        END IF;
    END LOOP;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON public.coordination_slots TO service_role;
    END IF;
END
$$;

DROP POLICY IF EXISTS service_role_all ON public.coordination_slots;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
        CREATE POLICY service_role_all ON public.coordination_slots
            FOR ALL TO service_role USING (true) WITH CHECK (true);
    END IF;
END
$$;
