-- berth state: servers, tasks and their steps and logs, the outbox, dead letters,
-- api tokens, idempotency keys. History is kept: rows of finished tasks stay.

CREATE TABLE servers (
    name        text PRIMARY KEY,
    host        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE server_services (
    server                 text NOT NULL REFERENCES servers(name) ON DELETE CASCADE,
    service                text NOT NULL CHECK (service IN ('http', 'db', 'dns')),
    type                   text NOT NULL,
    port                   integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    host                   text,
    admin_user             text,
    -- sealed with the cluster key (berth-secrets); never returned by the API
    admin_password_sealed  text,
    PRIMARY KEY (server, service)
);

CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    -- sha256 of the token; the token itself is shown once, at creation
    token_hash    text NOT NULL UNIQUE,
    scope         text NOT NULL DEFAULT 'admin',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz
);

CREATE TABLE tasks (
    id            uuid PRIMARY KEY,
    type          text NOT NULL,
    target        text NOT NULL,
    target_kind   text NOT NULL CHECK (target_kind IN ('server', 'platform', 'site')),
    args          jsonb NOT NULL DEFAULT '{}',
    status        text NOT NULL CHECK (status IN ('queued', 'processing', 'success', 'warning', 'error', 'cancelled')),
    trace_id      text NOT NULL,
    traceparent   text NOT NULL,
    requested_by  text NOT NULL,
    retry_of      uuid REFERENCES tasks(id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE INDEX tasks_target_status ON tasks (target, status, created_at);
CREATE INDEX tasks_status_created ON tasks (status, created_at);
CREATE INDEX tasks_created ON tasks (created_at DESC);

CREATE TABLE steps (
    id            uuid PRIMARY KEY,
    task_id       uuid NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    position      integer NOT NULL,
    service       text NOT NULL,
    server        text NOT NULL,
    action        text NOT NULL,
    args          jsonb NOT NULL DEFAULT '{}',
    compensation  text,
    secret        text,
    status        text NOT NULL CHECK (status IN ('pending', 'running', 'success', 'warning', 'error', 'compensating', 'compensated')),
    attempts      integer NOT NULL DEFAULT 0,
    error         text,
    history       jsonb NOT NULL DEFAULT '[]',
    started_at    timestamptz,
    finished_at   timestamptz,
    UNIQUE (task_id, position)
);

CREATE TABLE task_log (
    seq      bigserial PRIMARY KEY,
    task_id  uuid NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    step_id  uuid,
    at       timestamptz NOT NULL DEFAULT now(),
    level    text NOT NULL,
    message  text NOT NULL
);
CREATE INDEX task_log_task ON task_log (task_id, seq);

-- Messages to publish, written in the same transaction as the state they announce.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    exchange     text NOT NULL,
    routing_key  text NOT NULL,
    message_id   text NOT NULL,
    payload      jsonb NOT NULL,
    traceparent  text NOT NULL DEFAULT '',
    -- x-attempt of the message: a replayed step goes on counting its attempts
    attempt      integer NOT NULL DEFAULT 1,
    task_id      uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    sent_at      timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

CREATE TABLE dead_letters (
    id            uuid PRIMARY KEY,
    task_id       uuid NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    step_id       uuid NOT NULL,
    routing_key   text NOT NULL,
    error         text NOT NULL,
    history       jsonb NOT NULL DEFAULT '[]',
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    replayed_at   timestamptz,
    discarded_at  timestamptz
);
CREATE INDEX dead_letters_open ON dead_letters (created_at) WHERE discarded_at IS NULL;

CREATE TABLE idempotency_keys (
    token_id      uuid NOT NULL,
    key           text NOT NULL,
    request_hash  text NOT NULL,
    status        integer,
    response      jsonb,
    location      text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, key)
);
