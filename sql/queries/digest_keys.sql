-- Staff reply digests: the Idempotency-Key each first went to Resend under (migration 23).

-- name: reply_digest_keys
-- The key of each named digest (NULL: never sent yet), and the digests
-- still sending under each of those keys.
SELECT d.id, d.idempotency_key,
       ARRAY(SELECT o.id FROM public.reply_digests AS o
             WHERE o.idempotency_key = d.idempotency_key AND o.status = 'sending'
             ORDER BY o.id) AS companions
FROM public.reply_digests AS d
WHERE d.id = ANY (%(ids)s);

-- name: reply_digests_attempt_keyed
-- Right before the provider call, after the gate: this claim's digests only
-- (a lapsed lease lost them to a newer claim), leased afresh for the call,
-- an attempt counted, and the key kept if they have none yet.
UPDATE public.reply_digests AS d
SET attempts = d.attempts + 1,
    lease_until = now() + make_interval(secs => %(lease_s)s),
    idempotency_key = coalesce(d.idempotency_key, %(key)s),
    updated_at = now()
WHERE d.id = ANY (%(ids)s) AND d.status = 'sending' AND d.claim_token = %(token)s
RETURNING d.id, d.attempts;
