-- Signed webhooks (decision 0021): endpoints, one delivery per (event, endpoint), and the
-- log of every attempt. The delivery row is the truth; the broker only wakes it.

CREATE TABLE webhook_endpoints (
    id uuid PRIMARY KEY,
    url text NOT NULL,
    -- Event filters, as written (`task.finished`, `site.*`, `task.finished:install:failed`).
    events text[] NOT NULL,
    -- Bound to a client: events about that client's sites only. No foreign key yet: the
    -- clients table comes with the tenancy work, whose migration adds it.
    client_id uuid NULL,
    description text NOT NULL DEFAULT '',
    -- The `whsec_` secret, sealed with the cluster key (libs/secrets).
    secret_sealed text NOT NULL,
    -- While a rotation's grace lasts, deliveries are signed with this one too.
    previous_secret_sealed text NULL,
    previous_secret_until timestamptz NULL,
    enabled boolean NOT NULL DEFAULT true,
    disabled_reason text NULL,
    disabled_at timestamptz NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX webhook_endpoints_enabled ON webhook_endpoints (created_at) WHERE enabled;

CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- The notice's id: the `webhook-id` header, the same on every attempt and redelivery.
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    -- The body as delivered (signed byte for byte).
    body text NOT NULL,
    -- The task's trace, sent as `traceparent`.
    traceparent text NOT NULL DEFAULT '',
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'delivered', 'failed', 'skipped')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NULL,
    -- A notices process is attempting it until then (a crashed one's lease runs out).
    lease_until timestamptz NULL,
    redelivery_of uuid NULL REFERENCES webhook_deliveries (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz NULL
);

-- One delivery per event and endpoint, however often the notice is redelivered.
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (event_id, endpoint_id)
    WHERE redelivery_of IS NULL;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_of ON webhook_deliveries (endpoint_id, created_at DESC);

CREATE TABLE webhook_attempts (
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    number integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    status_code integer NULL,
    latency_ms bigint NOT NULL,
    error text NULL,
    PRIMARY KEY (delivery_id, number)
);
