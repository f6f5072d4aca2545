-- Typed steps (message version 2, decision 0015): `args` holds the step's typed work
-- (`{"service", "step": {"action", "spec"}}`) and `undo` the step that takes it back;
-- `protocol` is the message version the step was planned with. A step planned by an
-- older berth is not sent: its task fails saying to retry it (a retry plans anew).
ALTER TABLE steps ADD COLUMN undo jsonb;
ALTER TABLE steps ADD COLUMN protocol integer NOT NULL DEFAULT 1;
