-- Site cron (issue 13): the platform's cron method, each site's cron key (sealed like its
-- database password; given to the site's database by a `site-cron-key` step) and its last
-- cron run, and what the bounded cron history needs (decision 0016).

ALTER TABLE platforms
    ADD COLUMN cron_method text NOT NULL DEFAULT 'drush' CHECK (cron_method IN ('drush', 'http'));

ALTER TABLE sites
    -- sealed with the cluster key (berth-secrets); never returned by the API. Made by the
    -- API when an install, verify or cron is queued for a site that has none.
    ADD COLUMN cron_key_sealed        text,
    -- the site's database holds that key (false again when the site moves database)
    ADD COLUMN cron_key_given         boolean NOT NULL DEFAULT false,
    -- the last cron task; no foreign key: the history pruning never removes it
    ADD COLUMN cron_last_task         uuid,
    ADD COLUMN cron_last_started_at   timestamptz,
    ADD COLUMN cron_last_duration_ms  bigint,
    ADD COLUMN cron_last_result       text CHECK (cron_last_result IN ('success', 'failed'));

-- The successful cron runs of each site, newest first: what the pruning ranks.
CREATE INDEX tasks_cron_succeeded ON tasks (target, created_at DESC, id DESC)
    WHERE type = 'cron' AND status IN ('success', 'warning');
-- A task a retry names is kept; retries are few, so this index is small.
CREATE INDEX tasks_retry_of ON tasks (retry_of) WHERE retry_of IS NOT NULL;
