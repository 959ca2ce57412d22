-- 02 What the seed plan assumed already existed: stages as data, registrations.

CREATE TABLE IF NOT EXISTS public.registration_stages (
    stage    text PRIMARY KEY CHECK (stage ~ '^[a-z][a-z_]*$'),
    position int  NOT NULL,
    label    text NOT NULL
);

-- Labels are what customers read; editing them here is how a dealership
-- rewords a stage without a deploy, so re-applying must not overwrite them.
INSERT INTO public.registration_stages (stage, position, label) VALUES
    ('sale_complete',       10, 'Sale complete'),
    ('documents_collected', 20, 'Documents collected'),
    ('submitted_to_dmv',    30, 'Submitted to the DMV'),
    ('dmv_processing',      40, 'DMV processing'),
    ('sticker_ready',       50, 'Plates and sticker ready'),
    ('sticker_delivered',   60, 'Plates and sticker delivered'),
    ('needs_attention',     90, 'Needs your attention')
ON CONFLICT (stage) DO NOTHING;

CREATE TABLE IF NOT EXISTS public.registrations (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_name  text NOT NULL CHECK (length(btrim(customer_name)) > 0),
    customer_phone text,
    customer_email text,
    vin            text,
    vehicle_year   int CHECK (vehicle_year BETWEEN 1900 AND 2100),
    vehicle_make   text,
    vehicle_model  text,
    plate_number   text,
    current_stage  text NOT NULL DEFAULT 'sale_complete'
                   REFERENCES public.registration_stages (stage),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- Named so the error a person sees says what is wrong with the value.
    CONSTRAINT registrations_customer_phone_e164
        CHECK (customer_phone ~ '^\+[1-9][0-9]{6,14}$'),
    CONSTRAINT registrations_customer_email_shape
        CHECK (customer_email ~ '^[^@[:space:]]+@[^@[:space:]]+\.[^@[:space:]]+$')
);

-- RLS looks registrations up by phone for every customer query.
CREATE INDEX IF NOT EXISTS ix_registrations_customer_phone
    ON public.registrations (customer_phone);
