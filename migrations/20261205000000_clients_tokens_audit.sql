-- Tenancy: clients own sites; tokens carry scopes, an expiry and an optional client; quotas
-- per client; an audit log of mutating requests; guarded sites. See
-- docs/decisions/0020-clients-and-scoped-tokens.md.

CREATE TABLE clients (
    id                uuid PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    email             text,
    -- A storefront's own reference (its customer or order id): a retried "create client"
    -- with the same (storefront, external_ref) finds the same client.
    storefront        text,
    external_ref      text,
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'suspended', 'cancelled')),
    -- Quotas (Aegir's hosting_quota); NULL: no limit.
    max_sites         integer CHECK (max_sites >= 0),
    max_disk_bytes    bigint CHECK (max_disk_bytes >= 0),
    max_backup_bytes  bigint CHECK (max_backup_bytes >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((storefront IS NULL) = (external_ref IS NULL))
);
CREATE UNIQUE INDEX clients_external_ref ON clients (storefront, external_ref)
    WHERE external_ref IS NOT NULL;

-- Every site belongs to a client: one per distinct old free-text `client`, else `default`.
INSERT INTO clients (id, name) VALUES (gen_random_uuid(), 'default');
INSERT INTO clients (id, name, email)
SELECT gen_random_uuid(), c, e
  FROM (SELECT btrim(client) AS c, min(client_email) AS e FROM sites
         WHERE btrim(coalesce(client, '')) NOT IN ('', 'default')
         GROUP BY btrim(client)) d;

ALTER TABLE sites ADD COLUMN client_id uuid REFERENCES clients(id);
UPDATE sites s SET client_id = c.id FROM clients c
 WHERE c.name = coalesce(nullif(btrim(s.client), ''), 'default');
ALTER TABLE sites ALTER COLUMN client_id SET NOT NULL;
ALTER TABLE sites DROP COLUMN client;
CREATE INDEX sites_client ON sites (client_id, uri);

-- Guarded sites refuse disable and delete until unguarded (Aegir's site guard).
ALTER TABLE sites ADD COLUMN guarded boolean NOT NULL DEFAULT false;
-- Site files + database, in bytes, as last measured (NULL: never measured).
ALTER TABLE sites ADD COLUMN disk_bytes bigint;
ALTER TABLE sites ADD COLUMN disk_measured_at timestamptz;

-- The client a task's site belonged to when it was queued: client tokens see these.
ALTER TABLE tasks ADD COLUMN client_id uuid REFERENCES clients(id);
UPDATE tasks t SET client_id = s.client_id FROM sites s
 WHERE t.target_kind = 'site' AND s.uri = t.target;
CREATE INDEX tasks_client_created ON tasks (client_id, created_at DESC) WHERE client_id IS NOT NULL;

-- Tokens: `scope` holds space-separated scopes (`admin`, `sites:write`, …).
ALTER TABLE api_tokens ADD COLUMN client_id uuid REFERENCES clients(id);
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
ALTER TABLE api_tokens ADD COLUMN revoked_at timestamptz;
-- The token that made this one through the API (NULL: the CLI on the database).
ALTER TABLE api_tokens ADD COLUMN created_by uuid REFERENCES api_tokens(id);

-- Who asked for what: one row per mutating request under /api/v1. Never a body, never a
-- secret (the token is named by id and name, not its value).
CREATE TABLE audit_log (
    id               bigserial PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    token_id         uuid,
    token_name       text,
    client_id        uuid,
    client           text,
    method           text NOT NULL,
    path             text NOT NULL,
    resource         text NOT NULL,
    idempotency_key  text,
    status           integer NOT NULL,
    task_id          uuid
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_token ON audit_log (token_id, at DESC);
CREATE INDEX audit_log_client ON audit_log (client_id, at DESC);
