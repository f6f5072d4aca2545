-- Measured disk usage (issue 14, decision 0022): a verify or a usage task measures the
-- site's directory (allocated blocks) and its database (data and indexes); disk_bytes,
-- already there and counted by max_disk_bytes, is their sum.
ALTER TABLE sites ADD COLUMN disk_files_bytes bigint;
ALTER TABLE sites ADD COLUMN disk_db_bytes bigint;
-- The last walk stopped at its time, entry or depth limit: disk_files_bytes is a lower bound.
ALTER TABLE sites ADD COLUMN disk_partial boolean NOT NULL DEFAULT false;

-- A schedule of the usage job.
ALTER TABLE schedules DROP CONSTRAINT schedules_kind_check;
ALTER TABLE schedules ADD CONSTRAINT schedules_kind_check
    CHECK (kind IN ('cron', 'backup', 'prune', 'drill', 'usage'));
