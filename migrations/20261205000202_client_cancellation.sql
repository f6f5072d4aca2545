-- A cancelled client's sites are deleted (each with a backup first) once `cancel_after`
-- passes; `sites_deleted_at` says the scheduler queued those deletes (once).
ALTER TABLE clients ADD COLUMN cancel_after timestamptz;
ALTER TABLE clients ADD COLUMN sites_deleted_at timestamptz;
