-- Every name a site that is not deleted answers to, in one table whose primary key keeps
-- two sites from sharing one: its uri, its aliases, and the new uri a migrate under way
-- will give it. Names are reserved in the transaction that saves the site, its aliases or
-- the migrate, so two concurrent requests (site A; site B with alias A) cannot both pass a
-- check and then both insert: the second meets the first's row (decision 0011).
CREATE TABLE site_names (
    name  text PRIMARY KEY,
    -- Deferred: a new site's names are reserved before its row is written.
    site  text NOT NULL REFERENCES sites(uri) ON UPDATE CASCADE ON DELETE CASCADE
          DEFERRABLE INITIALLY DEFERRED,
    kind  text NOT NULL CHECK (kind IN ('uri', 'alias', 'rename')),
    -- A rename (migrate with a new uri) holds its name while this task is unfinished.
    task  uuid REFERENCES tasks(id),
    CHECK ((kind = 'rename') = (task IS NOT NULL))
);
CREATE INDEX site_names_site ON site_names (site);

INSERT INTO site_names (name, site, kind)
SELECT uri, uri, 'uri' FROM sites WHERE status <> 'deleted'
ON CONFLICT (name) DO NOTHING;
INSERT INTO site_names (name, site, kind)
SELECT a.alias, a.site, 'alias' FROM site_aliases a JOIN sites s ON s.uri = a.site
WHERE s.status <> 'deleted'
ON CONFLICT (name) DO NOTHING;
INSERT INTO site_names (name, site, kind, task)
SELECT t.args->'to'->>'uri', t.target, 'rename', t.id FROM tasks t JOIN sites s ON s.uri = t.target
WHERE t.type = 'migrate' AND t.status IN ('queued', 'processing') AND s.status <> 'deleted'
  AND t.args->'to'->>'uri' <> t.target
ON CONFLICT (name) DO NOTHING;

-- A deleted site keeps its row, tasks and backups as history, but not its uri: when the
-- uri is used again, the old row's key becomes `<uri>~<n>` (`~` is in no host name), and
-- its backups and packages follow it (ON UPDATE CASCADE). Its tasks keep the uri they ran
-- under, so they stay listed with the uri's new site.
CREATE SEQUENCE site_retired;
