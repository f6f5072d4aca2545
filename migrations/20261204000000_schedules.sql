-- Schedules (issue 13): what berth runs on its own. A schedule is a cron expression in a
-- time zone, a job (cron, backup, prune, drill) with its options, and a scope (every site, a
-- platform's, a client's, one site's); a site follows the most specific schedule of a kind.
CREATE TABLE schedules (
    name                  text PRIMARY KEY,
    kind                  text NOT NULL CHECK (kind IN ('cron', 'backup', 'prune', 'drill')),
    scope                 text NOT NULL,
    expression            text NOT NULL,
    time_zone             text NOT NULL DEFAULT 'UTC',
    -- the job and its options, read back into berth_schedule::Job
    job                   jsonb NOT NULL,
    -- a run may start until window_secs after its slot; runs spread over spread_secs
    window_secs           integer NOT NULL CHECK (window_secs > 0),
    spread_secs           integer NOT NULL CHECK (spread_secs >= 0),
    -- at most this many of the schedule's tasks queued or running per web / db server (0: no cap)
    cap_per_web_server    integer NOT NULL DEFAULT 0 CHECK (cap_per_web_server >= 0),
    cap_per_db_server     integer NOT NULL DEFAULT 0 CHECK (cap_per_db_server >= 0),
    -- this many failed runs in a row raise a "failing" alert (0: never)
    alert_after_failures  integer NOT NULL DEFAULT 3 CHECK (alert_after_failures >= 0),
    enabled               boolean NOT NULL DEFAULT true,
    -- every slot at or before this has a run row for each site it covered
    closed_through        timestamptz NOT NULL DEFAULT now(),
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, scope)
);

-- One row per (schedule, site, slot), written in the transaction that queues the task: the
-- unique key is what lets any number of scheduler processes run without firing twice.
CREATE TABLE schedule_runs (
    id           bigserial PRIMARY KEY,
    schedule     text NOT NULL REFERENCES schedules(name) ON DELETE CASCADE ON UPDATE CASCADE,
    site         text NOT NULL REFERENCES sites(uri) ON DELETE CASCADE ON UPDATE CASCADE,
    slot         timestamptz NOT NULL,
    due_at       timestamptz NOT NULL,
    status       text NOT NULL CHECK (status IN ('fired', 'skipped', 'missed')),
    task_id      uuid REFERENCES tasks(id) ON DELETE SET NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (schedule, site, slot)
);
CREATE INDEX schedule_runs_recent ON schedule_runs (schedule, site, slot DESC);
CREATE INDEX schedule_runs_task ON schedule_runs (task_id) WHERE task_id IS NOT NULL;

-- Alerts raised on a schedule (for a site, or the whole schedule): at most one open alert of
-- a kind per schedule and site; cleared when the condition ends.
CREATE TABLE schedule_alerts (
    id          bigserial PRIMARY KEY,
    schedule    text NOT NULL REFERENCES schedules(name) ON DELETE CASCADE ON UPDATE CASCADE,
    site        text REFERENCES sites(uri) ON DELETE CASCADE ON UPDATE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('missed', 'failing', 'late', 'overdue', 'drill_failed')),
    message     text NOT NULL,
    raised_at   timestamptz NOT NULL DEFAULT now(),
    cleared_at  timestamptz
);
CREATE UNIQUE INDEX schedule_alerts_open
    ON schedule_alerts (schedule, coalesce(site, ''), kind) WHERE cleared_at IS NULL;
