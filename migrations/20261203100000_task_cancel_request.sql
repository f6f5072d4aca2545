-- A cancel asked for while the task runs: the state service stops its running step, takes
-- back its done steps and ends it `cancelled` (decision 0013).
ALTER TABLE tasks
    ADD COLUMN cancel_requested_at timestamptz,
    ADD COLUMN cancel_requested_by text;
