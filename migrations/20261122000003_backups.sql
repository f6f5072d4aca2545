-- Backups of sites: tarballs of the site directory with its database dump, on the server
-- whose backup worker made them. Rows stay after the file is deleted (deleted_at is set).

CREATE TABLE backups (
    id           uuid PRIMARY KEY,
    site         text NOT NULL REFERENCES sites(uri) ON UPDATE CASCADE,
    server       text NOT NULL,
    file         text NOT NULL,
    path         text NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    compression  text NOT NULL CHECK (compression IN ('zstd', 'gzip')),
    description  text NOT NULL,
    task_id      uuid NOT NULL REFERENCES tasks(id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    UNIQUE (server, path)
);
CREATE INDEX backups_site ON backups (site, created_at DESC);
