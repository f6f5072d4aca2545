-- Every site's PHP (its php-fpm pool) and its installer (drush) run under a unix user of
-- the site's own, so that one site's code cannot read another's settings, files or
-- private files. The user is a bare number (no passwd entry is needed for it), from a
-- range kept for sites; the uid and a gid of the same number are the site's.
CREATE SEQUENCE site_unix_uid START 200000 MINVALUE 200000 MAXVALUE 999999 NO CYCLE;
ALTER TABLE sites ADD COLUMN unix_uid integer NOT NULL DEFAULT nextval('site_unix_uid');
ALTER SEQUENCE site_unix_uid OWNED BY sites.unix_uid;
ALTER TABLE sites ADD CONSTRAINT sites_unix_uid_unique UNIQUE (unix_uid);
