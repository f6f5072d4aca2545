-- A backup target may keep its copies by a retention of its own (issue 13, "retention applies
-- per target"): absent, a copy goes with its backup's local file; present, the prune task
-- weighs the site's copies on that target by it, and a backup whose file was pruned stays
-- restorable from such a copy (docs/decisions/0017-off-site-backup-copies.md).
ALTER TABLE backup_targets ADD COLUMN retention jsonb;
