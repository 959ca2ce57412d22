-- 06 The delivery history outlives the queue.
--
-- notification_queue is working state: once a row is processed nothing reads
-- it but the status timeline, and an operator may prune old rows. Migration 04
-- tied registration_notifications.queue_id to it with ON DELETE CASCADE, so
-- pruning the queue would have erased what was sent to whom. queue_id stays
-- as the burst a delivery came from and, with UNIQUE (queue_id, channel), as
-- the guard against a second set of deliveries for one queue row.
--
-- It also takes a foreign-key check (an index probe and a row lock on the
-- queue row the same statement has just closed) off each of the two rows the
-- claim writes per queue row: about a sixth of the claim's database time
-- (bench/claim.py).

ALTER TABLE public.registration_notifications
    DROP CONSTRAINT IF EXISTS registration_notifications_queue_id_fkey;
