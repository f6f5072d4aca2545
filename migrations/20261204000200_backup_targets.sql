-- Off-site backup targets (S3-compatible object stores) and the copies of backups on them
-- (docs/decisions/0017-off-site-backup-copies.md).
CREATE TABLE backup_targets (
    name                      text PRIMARY KEY,
    kind                      text NOT NULL CHECK (kind IN ('s3')),
    endpoint                  text NOT NULL,
    bucket                    text NOT NULL,
    prefix                    text NOT NULL,
    region                    text NOT NULL,
    access_key_id             text NOT NULL,
    -- Sealed with the cluster key (libs/secrets); never answered.
    secret_access_key_sealed  text NOT NULL,
    created_at                timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE backup_copies (
    -- The upload step's id: a redelivered result records nothing twice.
    id           uuid PRIMARY KEY,
    backup       uuid NOT NULL REFERENCES backups(id),
    target       text NOT NULL REFERENCES backup_targets(name),
    object_key   text NOT NULL,
    size         bigint NOT NULL,
    sha256       text NOT NULL,
    uploaded_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
-- One live copy of a backup per target.
CREATE UNIQUE INDEX backup_copies_live ON backup_copies (backup, target) WHERE deleted_at IS NULL;
CREATE INDEX backup_copies_target ON backup_copies (target) WHERE deleted_at IS NULL;
