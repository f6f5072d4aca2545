//! The names live sites answer to (`site_names`): reserved in the transaction that saves
//! the site, its aliases or a migrate to a new uri, under one primary key, so that two
//! concurrent requests for one name cannot both succeed (decision 0011).

use crate::{Result, StoreError};
use sqlx::PgConnection;
use uuid::Uuid;

/// Why a site holds a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Uri,
    Alias,
    /// The new uri of a migrate under way.
    Rename,
}

impl NameKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Uri => "uri",
            Self::Alias => "alias",
            Self::Rename => "rename",
        }
    }
}

/// A rename's name is held only while its migrate is unfinished (a failed or cancelled
/// migrate leaves its row behind; whoever wants the name next clears it).
const HELD: &str = "(n.kind <> 'rename' OR EXISTS (SELECT 1 FROM tasks t WHERE t.id = n.task
                     AND t.status IN ('queued', 'processing')))";

/// Reserves `names` for `site` in the caller's transaction. A name another site holds is
/// a [`StoreError::Conflict`] that names the site, its status and what to do; the caller's
/// transaction then writes nothing.
pub async fn reserve(
    conn: &mut PgConnection,
    site: &str,
    names: &[String],
    kind: NameKind,
    task: Option<Uuid>,
) -> Result<()> {
    reserve_kinds(conn, site, names, &vec![kind.as_str(); names.len()], task).await
}

/// Reserves a new site's uri and aliases in one statement (see [`reserve`]).
pub async fn reserve_site(conn: &mut PgConnection, uri: &str, aliases: &[String]) -> Result<()> {
    let mut names = vec![uri.to_string()];
    names.extend(aliases.iter().cloned());
    let mut kinds = vec![NameKind::Uri.as_str()];
    kinds.extend(aliases.iter().map(|_| NameKind::Alias.as_str()));
    reserve_kinds(conn, uri, &names, &kinds, None).await
}

async fn reserve_kinds(
    conn: &mut PgConnection,
    site: &str,
    names: &[String],
    kinds: &[&str],
    task: Option<Uuid>,
) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM site_names n WHERE n.name = ANY($1) AND NOT {HELD}"
    )))
    .bind(names)
    .execute(&mut *conn)
    .await?;
    // DO NOTHING waits for a concurrent transaction that inserted the same name, and then
    // skips it if that one committed: the statement itself is the check. Names go in sorted,
    // so two requests wanting each other's names wait in one order and cannot deadlock.
    let got: Vec<(String,)> = sqlx::query_as(
        "INSERT INTO site_names (name, site, kind, task)
         SELECT n, $2, k, $4 FROM unnest($1::text[], $3::text[]) AS u(n, k) ORDER BY n
         ON CONFLICT (name) DO NOTHING RETURNING name",
    )
    .bind(names)
    .bind(site)
    .bind(kinds)
    .bind(task)
    .fetch_all(&mut *conn)
    .await?;
    if got.len() == names.len() {
        return Ok(());
    }
    let taken: Vec<String> = names
        .iter()
        .filter(|n| !got.iter().any(|(g,)| g == *n))
        .cloned()
        .collect();
    let holders: Vec<(String, String, String, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT n.name, n.site, n.kind, s.status, n.task FROM site_names n
         JOIN sites s ON s.uri = n.site WHERE n.name = ANY($1) ORDER BY n.name",
    )
    .bind(&taken)
    .fetch_all(&mut *conn)
    .await?;
    let why: Vec<String> = taken
        .iter()
        .map(|name| match holders.iter().find(|h| &h.0 == name) {
            Some((_, holder, kind, status, task)) => held_by(name, holder, kind, status, *task),
            None => format!("`{name}` was taken by another site at the same moment; try again"),
        })
        .collect();
    Err(StoreError::Conflict(why.join("; ")))
}

/// Says who holds `name` and what to do to free it.
fn held_by(name: &str, holder: &str, kind: &str, status: &str, task: Option<Uuid>) -> String {
    let what = match kind {
        "uri" => format!("`{name}` is the uri of site `{holder}`, which is {status}"),
        "alias" => format!("`{name}` is an alias of site `{holder}`, which is {status}"),
        _ => format!(
            "`{name}` is the new uri of site `{holder}`, whose migrate {} is under way",
            task.map(|t| t.to_string()).unwrap_or_default()
        ),
    };
    let todo = match (kind, status) {
        ("rename", _) => "wait for that migrate to end".to_string(),
        ("alias", _) => {
            format!("remove it from that site's aliases first (PATCH /api/v1/sites/{holder})")
        }
        (_, "failed") => format!(
            "its install failed: DELETE /api/v1/sites/{holder} forgets it (or a new install task retries it)"
        ),
        (_, "installing") => format!(
            "wait for its install to end (if it fails, DELETE /api/v1/sites/{holder} forgets it)"
        ),
        (_, "enabled") => {
            "delete it first (a disable task, then a delete task; history is kept)".to_string()
        }
        _ => "delete it first (a delete task; history is kept)".to_string(),
    };
    format!("{what}: {todo}")
}

/// Frees every name of `site` (it is deleted).
pub async fn release_all(conn: &mut PgConnection, site: &str) -> Result<()> {
    sqlx::query("DELETE FROM site_names WHERE site = $1")
        .bind(site)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Frees the aliases of `site` (they are being replaced).
pub async fn release_aliases(conn: &mut PgConnection, site: &str) -> Result<()> {
    sqlx::query("DELETE FROM site_names WHERE site = $1 AND kind = 'alias'")
        .bind(site)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Moves a deleted site that still has the key `uri` aside (to `<uri>~<n>`), so that a new
/// site, or a site being renamed, can take the uri; the old row stays as history, with
/// its backups and packages (ON UPDATE CASCADE). Its tasks keep the uri.
pub async fn retire_deleted(conn: &mut PgConnection, uri: &str) -> Result<()> {
    sqlx::query(
        "UPDATE sites SET uri = uri || '~' || nextval('site_retired'), updated_at = now()
         WHERE uri = $1 AND status = 'deleted'",
    )
    .bind(uri)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Which of `names` a site other than `except_site` holds (for answers that write
/// nothing, such as a migrate plan; what writes reserves with [`reserve`]).
pub async fn held(
    conn: &mut PgConnection,
    names: &[String],
    except_site: Option<&str>,
) -> Result<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT n.name FROM site_names n WHERE n.name = ANY($1)
           AND n.site IS DISTINCT FROM $2 AND {HELD} ORDER BY n.name"
    )))
    .bind(names)
    .bind(except_site)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(n,)| n).collect())
}

/// A finished rename: `site` was renamed to `new_uri` (its names followed it by ON UPDATE
/// CASCADE); the old uri is free, and the reserved new one is its uri now.
pub async fn renamed(conn: &mut PgConnection, old_uri: &str, new_uri: &str) -> Result<()> {
    sqlx::query("DELETE FROM site_names WHERE name = $1 AND site = $2")
        .bind(old_uri)
        .bind(new_uri)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO site_names (name, site, kind) VALUES ($1, $1, 'uri')
         ON CONFLICT (name) DO UPDATE SET kind = 'uri', task = NULL
         WHERE site_names.site = EXCLUDED.site",
    )
    .bind(new_uri)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
