-- Restore drills (decision 0018): a backup verified by a drill records when and by which
-- task. A drill's throwaway site has no row of its own; its unix uid comes from the site
-- sequence so that it is never a site's.
ALTER TABLE backups ADD COLUMN verified_at timestamptz;
ALTER TABLE backups ADD COLUMN verified_by_task uuid REFERENCES tasks(id);
