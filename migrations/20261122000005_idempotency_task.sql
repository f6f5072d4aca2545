-- The task a request created under an Idempotency-Key, written in the request's own
-- transaction: when the API dies before it saves the answer, a resend learns the task
-- instead of waiting for ever on a claim nobody will finish, or creating the task twice.
ALTER TABLE idempotency_keys ADD COLUMN task_id uuid;
