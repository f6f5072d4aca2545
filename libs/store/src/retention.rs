//! What a retention policy keeps of a site's backups: their local files by the site's
//! policy, and their copies on each target with a retention of its own by the target's
//! (issue 13: "retention applies per target"). The preview, the API's intake and the
//! scheduler all decide a prune with [`decide_prune`], so a prune removes what the preview
//! said.

use crate::{PgConnection, Result};
use berth_contracts::schedule::RetentionSpec;
use berth_contracts::task::{BackupRef, CopyRef, PruneTask};
use berth_hosting::retention::{Backup, Policy, PolicyError, Reason, apply, policy};
use chrono::{DateTime, Utc};
use std::collections::{BTreeSet, HashSet};
use uuid::Uuid;

/// A backup that a retention policy weighs (its local file, or its copy on one target).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RetentionCandidate {
    pub id: Uuid,
    pub file: String,
    pub path: String,
    pub server: String,
    pub created_at: DateTime<Utc>,
    pub description: String,
    /// Made by a restore, migrate or delete before it changed the site.
    pub before_change: bool,
    /// A queued or running task uses it (restores or drills from it, or removes it already).
    pub in_use: bool,
}

/// A candidate and the rules that keep it (none: it goes).
pub type Verdicts = Vec<(RetentionCandidate, BTreeSet<Reason>)>;

/// What is weighed: the backups' files on their server, or their copies on one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weighed<'a> {
    Local,
    Target(&'a str),
}

/// A site's backups as `on` holds them, newest first.
pub async fn retention_candidates(
    conn: &mut PgConnection,
    site: &str,
    on: Weighed<'_>,
) -> Result<Vec<RetentionCandidate>> {
    let target = match on {
        Weighed::Local => None,
        Weighed::Target(t) => Some(t),
    };
    Ok(sqlx::query_as(
        "SELECT b.id, b.file, b.path, b.server, b.created_at, b.description,
                coalesce(t.type IN ('restore', 'migrate', 'delete'), false) AS before_change,
                EXISTS (SELECT 1 FROM tasks u
                        WHERE u.status IN ('queued', 'processing')
                          AND (u.args -> 'restore_from' ->> 'id' = b.id::text
                               OR u.args -> 'backup' ->> 'id' = b.id::text
                               OR u.args ->> 'backup' = b.id::text
                               OR u.args -> 'remove' @> jsonb_build_array(jsonb_build_object('id', b.id::text))
                               OR u.args -> 'copies' @> jsonb_build_array(jsonb_build_object('backup', b.id::text)))
                       ) AS in_use
         FROM backups b LEFT JOIN tasks t ON t.id = b.task_id
         WHERE b.site = $1
           AND CASE WHEN $2::text IS NULL THEN b.deleted_at IS NULL
                    ELSE EXISTS (SELECT 1 FROM backup_copies c WHERE c.backup = b.id
                                 AND c.target = $2 AND c.deleted_at IS NULL) END
         ORDER BY b.created_at DESC",
    )
    .bind(site)
    .bind(target)
    .fetch_all(&mut *conn)
    .await?)
}

/// What `policy` says of each of the site's backups as `on` holds them, newest first.
pub async fn retention_verdicts(
    conn: &mut PgConnection,
    site: &str,
    policy: &Policy,
    on: Weighed<'_>,
) -> Result<Verdicts> {
    let candidates = retention_candidates(conn, site, on).await?;
    let weighed: Vec<Backup<usize>> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| Backup {
            id: i,
            made_at: c.created_at,
            before_change: c.before_change,
            good: true,
            in_use: c.in_use,
        })
        .collect();
    let mut verdicts = apply(policy, &weighed);
    verdicts.sort_by_key(|v| v.id);
    Ok(candidates
        .into_iter()
        .zip(verdicts)
        .map(|(c, v)| (c, v.keep))
        .collect())
}

/// The backups no rule keeps.
pub fn forgotten(verdicts: &Verdicts) -> Vec<BackupRef> {
    verdicts
        .iter()
        .filter(|(_, keep)| keep.is_empty())
        .map(|(c, _)| BackupRef {
            id: c.id,
            path: c.path.clone(),
            server: c.server.clone(),
        })
        .collect()
}

/// One target's own retention and its verdicts on the site's copies there.
#[derive(Debug, Clone)]
pub struct TargetVerdicts {
    pub target: String,
    pub spec: RetentionSpec,
    pub verdicts: Verdicts,
}

/// A prune decided: the verdicts it follows and the task that carries them out.
#[derive(Debug, Clone)]
pub struct PruneDecision {
    pub local: Verdicts,
    pub targets: Vec<TargetVerdicts>,
    pub task: PruneTask,
}

/// The copies a prune removes: every copy of a removed backup on a target without a
/// retention of its own (`follow`: such copies, by backup), and every copy a target's own
/// retention forgets. Sorted, each once.
pub fn copies_removed(
    removed: &[BackupRef],
    follow: &[CopyRef],
    targets: &[TargetVerdicts],
) -> Vec<CopyRef> {
    let removed: HashSet<Uuid> = removed.iter().map(|b| b.id).collect();
    let mut out: BTreeSet<CopyRef> = follow
        .iter()
        .filter(|c| removed.contains(&c.backup))
        .cloned()
        .collect();
    for t in targets {
        for (c, keep) in &t.verdicts {
            if keep.is_empty() {
                out.insert(CopyRef {
                    backup: c.id,
                    target: t.target.clone(),
                });
            }
        }
    }
    out.into_iter().collect()
}

/// Decides a prune of `site` by `spec`: its local files by `spec`, its copies on each target
/// with a retention of its own by that target's. `Err`: `spec` is no policy.
pub async fn decide_prune(
    conn: &mut PgConnection,
    site: &str,
    spec: &RetentionSpec,
) -> Result<std::result::Result<PruneDecision, PolicyError>> {
    let local_policy = match policy(spec) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let local = retention_verdicts(conn, site, &local_policy, Weighed::Local).await?;
    let remove = forgotten(&local);
    let mut targets = Vec::new();
    for (target, own) in own_retentions(conn, site).await? {
        // Checked when the target was saved; one that no longer reads keeps everything.
        let Ok(p) = policy(&own) else {
            tracing::warn!(%target, "a backup target's retention does not read: its copies are kept");
            continue;
        };
        let verdicts = retention_verdicts(conn, site, &p, Weighed::Target(&target)).await?;
        targets.push(TargetVerdicts {
            target,
            spec: own,
            verdicts,
        });
    }
    let ids: Vec<Uuid> = remove.iter().map(|b| b.id).collect();
    let follow = following_copies(conn, &ids).await?;
    let copies = copies_removed(&remove, &follow, &targets);
    Ok(Ok(PruneDecision {
        local,
        targets,
        task: PruneTask {
            retention: spec.clone(),
            remove,
            copies: Some(copies),
        },
    }))
}

/// The targets with a retention of their own that hold live copies of the site's backups.
async fn own_retentions(
    conn: &mut PgConnection,
    site: &str,
) -> Result<Vec<(String, RetentionSpec)>> {
    let rows: Vec<(String, sqlx::types::Json<RetentionSpec>)> = sqlx::query_as(
        "SELECT t.name, t.retention FROM backup_targets t
         WHERE t.retention IS NOT NULL AND EXISTS (
             SELECT 1 FROM backup_copies c JOIN backups b ON b.id = c.backup
             WHERE c.target = t.name AND c.deleted_at IS NULL AND b.site = $1)
         ORDER BY t.name",
    )
    .bind(site)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(n, r)| (n, r.0)).collect())
}

/// The live copies of `backups` on targets without a retention of their own: they go with
/// their backup's file.
async fn following_copies(conn: &mut PgConnection, backups: &[Uuid]) -> Result<Vec<CopyRef>> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT c.backup, c.target FROM backup_copies c
         JOIN backup_targets t ON t.name = c.target
         WHERE c.backup = ANY($1) AND c.deleted_at IS NULL AND t.retention IS NULL
         ORDER BY c.backup, c.target",
    )
    .bind(backups)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(backup, target)| CopyRef { backup, target })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: u128) -> RetentionCandidate {
        RetentionCandidate {
            id: Uuid::from_u128(id),
            file: format!("f{id}"),
            path: format!("/b/f{id}"),
            server: "web".into(),
            created_at: DateTime::from_timestamp(id as i64 * 3600, 0).unwrap(),
            description: String::new(),
            before_change: false,
            in_use: false,
        }
    }

    fn backup_ref(id: u128) -> BackupRef {
        BackupRef {
            id: Uuid::from_u128(id),
            path: format!("/b/f{id}"),
            server: "web".into(),
        }
    }

    fn copy(id: u128, target: &str) -> CopyRef {
        CopyRef {
            backup: Uuid::from_u128(id),
            target: target.into(),
        }
    }

    #[test]
    fn copies_follow_their_backup_unless_their_target_keeps_them_by_its_own_retention() {
        // Backups 1 and 2 are pruned locally; 1 has a copy on `plain` (no retention of its
        // own), 2 one on `vault` (a retention that keeps it), 3 a copy on `vault` that
        // the vault's retention forgets although its local file stays.
        let follow = [copy(1, "plain"), copy(3, "plain")];
        let vault = TargetVerdicts {
            target: "vault".into(),
            spec: RetentionSpec::default(),
            verdicts: vec![
                (candidate(2), BTreeSet::from([Reason::Last])),
                (candidate(3), BTreeSet::new()),
            ],
        };
        let got = copies_removed(&[backup_ref(1), backup_ref(2)], &follow, &[vault]);
        assert_eq!(got, [copy(1, "plain"), copy(3, "vault")]);
    }

    #[test]
    fn nothing_removed_locally_and_no_target_retention_removes_no_copy() {
        assert!(copies_removed(&[], &[copy(1, "plain")], &[]).is_empty());
    }
}
