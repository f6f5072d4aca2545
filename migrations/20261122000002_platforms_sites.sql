-- Platforms (codebases on a web server), sites (domains installed on a platform, with a
-- database on a db server), their aliases, and the package registry of both.
-- History is kept: a deleted site keeps its row (status 'deleted') and its tasks.

CREATE TABLE platforms (
    name          text PRIMARY KEY,
    root          text NOT NULL,
    web_server    text NOT NULL REFERENCES servers(name),
    -- how sites are installed and upgraded: {"type": "drush", "bin": "vendor/bin/drush"}
    installer     jsonb NOT NULL DEFAULT '{"type": "drush"}',
    status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'verified', 'failed', 'deleted')),
    locked        boolean NOT NULL DEFAULT false,
    drupal_major  integer,
    core_version  text,
    -- sites found in <root>/sites/ that berth does not know yet, by the last verify
    found_sites   jsonb NOT NULL DEFAULT '[]',
    verified_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Two platforms may not share a codebase on one web server.
CREATE UNIQUE INDEX platforms_root ON platforms (web_server, root) WHERE status <> 'deleted';

CREATE TABLE sites (
    uri                 text PRIMARY KEY,
    platform            text NOT NULL REFERENCES platforms(name),
    db_server           text NOT NULL REFERENCES servers(name),
    client              text,
    client_email        text,
    profile             text NOT NULL,
    language            text NOT NULL DEFAULT 'en',
    redirection         boolean NOT NULL DEFAULT false,
    status              text NOT NULL
                        CHECK (status IN ('installing', 'enabled', 'disabled', 'failed', 'deleted')),
    db_name             text NOT NULL,
    db_user             text NOT NULL,
    -- sealed with the cluster key (berth-secrets); never returned by the API
    db_password_sealed  text NOT NULL,
    login_link          text,
    login_link_at       timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sites_platform ON sites (platform) WHERE status <> 'deleted';

-- An alias is a domain served as its site (or redirected to it): unique across sites.
CREATE TABLE site_aliases (
    alias       text PRIMARY KEY,
    site        text NOT NULL REFERENCES sites(uri) ON DELETE CASCADE ON UPDATE CASCADE,
    position    integer NOT NULL DEFAULT 0
);
CREATE INDEX site_aliases_site ON site_aliases (site, position);

-- What a platform's last verify found in its codebase.
CREATE TABLE platform_packages (
    platform        text NOT NULL REFERENCES platforms(name) ON DELETE CASCADE,
    name            text NOT NULL,
    type            text NOT NULL CHECK (type IN ('core', 'profile', 'module', 'theme')),
    title           text,
    version         text,
    schema_version  bigint,
    path            text NOT NULL DEFAULT '',
    languages       text[] NOT NULL DEFAULT '{}',
    old_short_name  text,
    PRIMARY KEY (platform, type, name)
);

-- What a site's last verify found enabled on it, with the schema installed in its database.
CREATE TABLE site_packages (
    site            text NOT NULL REFERENCES sites(uri) ON DELETE CASCADE ON UPDATE CASCADE,
    name            text NOT NULL,
    type            text NOT NULL CHECK (type IN ('core', 'profile', 'module', 'theme')),
    version         text,
    schema_version  bigint,
    enabled         boolean NOT NULL DEFAULT true,
    PRIMARY KEY (site, type, name)
);
