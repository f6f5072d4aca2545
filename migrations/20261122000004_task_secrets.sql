-- Secrets a task brings with it (the password of the database a restore moves a site to),
-- sealed with the cluster key; never returned by the API.
CREATE TABLE task_secrets (
    task_id  uuid NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    name     text NOT NULL,
    sealed   text NOT NULL,
    PRIMARY KEY (task_id, name)
);
