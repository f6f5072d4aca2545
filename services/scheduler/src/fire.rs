//! One tick: each schedule's open slots, site by site, and its alerts.

use crate::{SchedulerConfig, SchedulerError, publish};
use berth_contracts::steps::Compression;
use berth_contracts::task::{BackupTask, DrillTask, TaskArgs};
use berth_contracts::{Notice, NoticeEvent, TaskStatus, TaskType, exchanges};
use berth_hosting::fresh::Fresh;
use berth_outbox::Outbox;
use berth_schedule::{
    Expression, Firing, Job, Kind, RunState, SiteHome, Timing, decide, effective, failing_streak,
    overdue, scoped,
};
use berth_store::Store;
use berth_store::outbox::{OutboxMessage, OutboxRow};
use berth_store::schedules::{self as stored, CapOn, RecentRuns, ScheduleRow, SiteHomeRow};
use berth_store::tasks;
use chrono::{DateTime, Duration, Utc};
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// The most slots of one schedule looked at in a tick; older unclosed ones (a scheduler down
/// for long) are counted in one alert instead of a row each.
const MAX_OPEN_SLOTS: usize = 50;

/// What a tick did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    pub fired: usize,
    pub skipped: usize,
    pub missed: usize,
    /// Due but held back by a cap or the backlog: tried again next tick.
    pub waiting: usize,
    pub alerts: usize,
}

/// Looks at every schedule once.
pub async fn tick(
    store: &Store,
    outbox: &Outbox,
    cfg: &SchedulerConfig,
    now: DateTime<Utc>,
) -> Result<TickReport, SchedulerError> {
    let schedules = store.schedules().await?;
    let homes = {
        let mut conn = store.pool.acquire().await?;
        stored::site_homes(&mut conn).await?
    };
    let mut report = TickReport::default();
    for kind in Kind::ALL {
        let of_kind: Vec<&ScheduleRow> = schedules
            .iter()
            .filter(|s| s.values.kind == kind.as_str())
            .collect();
        for (row, sites) in covered(&of_kind, &homes) {
            let ctx = Ctx {
                store,
                outbox,
                cfg,
                now,
            };
            if let Err(e) = ctx.schedule(row, &sites, &mut report).await {
                tracing::warn!(schedule = %row.values.name, error = %e, "schedule not fired this tick");
            }
        }
    }
    if report != TickReport::default() {
        tracing::info!(?report, "scheduler tick");
    }
    Ok(report)
}

/// Each enabled schedule of one kind with the sites that follow it.
fn covered<'a>(
    of_kind: &[&'a ScheduleRow],
    homes: &'a [SiteHomeRow],
) -> Vec<(&'a ScheduleRow, Vec<&'a SiteHomeRow>)> {
    let scoped = scoped(
        of_kind
            .iter()
            .map(|s| (s.values.scope.as_str(), s.values.enabled)),
    );
    let mut by: HashMap<usize, Vec<&SiteHomeRow>> = HashMap::new();
    for home in homes {
        let site = SiteHome {
            uri: &home.uri,
            platform: &home.platform,
            client: home.client.as_deref(),
        };
        if let Some(s) = effective(&scoped, &site) {
            by.entry(s.id).or_default().push(home);
        }
    }
    let mut out: Vec<_> = by
        .into_iter()
        .map(|(i, sites)| (of_kind[i], sites))
        .collect();
    out.sort_by(|a, b| a.0.values.name.cmp(&b.0.values.name));
    out
}

struct Ctx<'a> {
    store: &'a Store,
    outbox: &'a Outbox,
    cfg: &'a SchedulerConfig,
    now: DateTime<Utc>,
}

/// What became of a site's run that was due.
enum Outcome {
    Fired,
    Waiting,
    /// Another scheduler recorded it first.
    Taken,
}

/// What a run's task status (`None`: the task is gone, so it had ended) says.
fn state_of(status: Option<&str>) -> RunState {
    match status.and_then(TaskStatus::parse) {
        Some(TaskStatus::Queued | TaskStatus::Processing) => RunState::Unfinished,
        Some(TaskStatus::Error | TaskStatus::Cancelled) => RunState::Failed,
        _ => RunState::Clear,
    }
}

fn previous_of(recent: &RecentRuns, uri: &str) -> RunState {
    match recent.get(uri).and_then(|runs| runs.first()) {
        Some(status) => state_of(status.as_deref()),
        None => RunState::Clear,
    }
}

impl Ctx<'_> {
    async fn schedule(
        &self,
        row: &ScheduleRow,
        sites: &[&SiteHomeRow],
        report: &mut TickReport,
    ) -> Result<(), SchedulerError> {
        let Ok(expr) = Expression::parse(&row.values.expression, &row.values.time_zone) else {
            tracing::warn!(schedule = %row.values.name, "its expression or time zone no longer parses");
            return Ok(());
        };
        let job: Job = match serde_json::from_value(row.values.job.clone()) {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(schedule = %row.values.name, error = %e, "its job no longer reads");
                return Ok(());
            }
        };
        let timing = Timing {
            window: Duration::seconds(row.values.window_secs.into()),
            spread: Duration::seconds(row.values.spread_secs.into()),
        };
        let threshold = row.values.alert_after_failures.max(1);
        let mut conn = self.store.pool.acquire().await?;
        let (slots, left_out) = expr.slots_between(row.closed_through, self.now, MAX_OPEN_SLOTS);
        if left_out > 0 {
            let first = slots[0];
            let message = format!(
                "{left_out} slots before {first} were missed: no scheduler ran within their window"
            );
            let mut tx = self.store.pool.begin().await?;
            let notice = alert(&mut tx, &row.values.name, None, "missed", &message).await?;
            stored::close_through(&mut tx, &row.values.name, first - Duration::milliseconds(1))
                .await?;
            tx.commit().await?;
            report.alerts += notice.len();
            publish(self.outbox, notice);
        }
        let mut recent = stored::recent_runs(&mut conn, &row.values.name, threshold.into()).await?;
        // Alerts are raised and cleared against what is open: no statement per site per tick.
        let open = stored::open_alerts(&mut conn, &row.values.name).await?;
        let is_open =
            |site: &str, kind: &str| open.contains(&(Some(site.to_string()), kind.to_string()));
        let drilled = match &job {
            Job::Drill { .. } => Some(stored::newest_backup_verified(&mut conn).await?),
            _ => None,
        };
        for slot in slots {
            let recorded = stored::sites_with_run(&mut conn, &row.values.name, slot).await?;
            let closes = timing.closes(slot);
            let due_sites: Vec<&SiteHomeRow> = match (&job, &drilled) {
                (Job::Drill { sample }, Some(verified)) => {
                    drill_sample(sites, &recorded, verified, *sample as usize)
                }
                _ => sites
                    .iter()
                    .copied()
                    .filter(|h| !recorded.contains(&h.uri))
                    .collect(),
            };
            for home in due_sites {
                let previous = previous_of(&recent, &home.uri);
                let due = timing.due(
                    slot,
                    &row.values.name,
                    &home.uri,
                    previous == RunState::Failed,
                );
                match decide(self.now, due, closes, previous, false) {
                    Firing::NotYet => {}
                    Firing::Skip => {
                        let mut tx = self.store.pool.begin().await?;
                        if stored::record_run(
                            &mut tx,
                            &row.values.name,
                            &home.uri,
                            slot,
                            due,
                            "skipped",
                        )
                        .await?
                        .is_some()
                        {
                            report.skipped += 1;
                        }
                        tx.commit().await?;
                    }
                    Firing::Missed => {
                        let mut tx = self.store.pool.begin().await?;
                        if stored::record_run(
                            &mut tx,
                            &row.values.name,
                            &home.uri,
                            slot,
                            due,
                            "missed",
                        )
                        .await?
                        .is_some()
                        {
                            report.missed += 1;
                            let message = format!(
                                "the {} run of {slot} did not start within its window ({} s)",
                                row.values.kind, row.values.window_secs
                            );
                            let notice =
                                alert(&mut tx, &row.values.name, Some(home), "missed", &message)
                                    .await?;
                            tx.commit().await?;
                            report.alerts += notice.len();
                            publish(self.outbox, notice);
                        }
                    }
                    Firing::Fire | Firing::Wait => {
                        let missed_open = is_open(&home.uri, "missed");
                        match self.fire(row, &job, home, slot, due, missed_open).await? {
                            Outcome::Fired => {
                                report.fired += 1;
                                let runs = recent.entry(home.uri.clone()).or_default();
                                runs.insert(0, Some(TaskStatus::Queued.as_str().into()));
                            }
                            Outcome::Waiting => report.waiting += 1,
                            Outcome::Taken => {}
                        }
                    }
                }
            }
            if self.now > closes {
                stored::close_through(&mut conn, &row.values.name, slot).await?;
            }
        }
        self.alerts(
            &mut conn, row, &expr, &timing, sites, &recent, &open, report,
        )
        .await
    }

    /// Fires one site's run: the run row, the task and its outbox row in one transaction,
    /// unless a cap or the backlog holds it back, or another scheduler fired it first.
    async fn fire(
        &self,
        row: &ScheduleRow,
        job: &Job,
        home: &SiteHomeRow,
        slot: DateTime<Utc>,
        due: DateTime<Utc>,
        missed_open: bool,
    ) -> Result<Outcome, SchedulerError> {
        let Some(task_type) = task_type_of(job) else {
            return Ok(Outcome::Waiting);
        };
        let mut tx = self.store.pool.begin().await?;
        let max_queued = self.cfg.max_queued_tasks;
        if max_queued > 0 && tasks::queued_count(&mut tx, max_queued).await? >= max_queued {
            return Ok(Outcome::Waiting);
        }
        let caps = [
            (
                row.values.cap_per_web_server,
                CapOn::WebServer(&home.web_server),
            ),
            (
                row.values.cap_per_db_server,
                CapOn::DbServer(&home.db_server),
            ),
        ];
        for (cap, on) in caps {
            if cap > 0
                && stored::lock_and_count(&mut tx, task_type.as_str(), on).await? >= cap.into()
            {
                return Ok(Outcome::Waiting);
            }
        }
        let Some(run) =
            stored::record_run(&mut tx, &row.values.name, &home.uri, slot, due, "fired").await?
        else {
            return Ok(Outcome::Taken);
        };
        let args = args_of(&mut tx, job, &home.uri).await?;
        if task_type == TaskType::Cron && !home.has_cron_key {
            // A site installed before cron keys gets its key now, as the API's intake does
            // (read with the site homes: no sealing nor UPDATE on each firing of a keyed site).
            let sealed = self
                .cfg
                .secret_key
                .seal(&berth_secrets::SecretKey::new_password());
            berth_store::cron::ensure_cron_key(&mut tx, &home.uri, &sealed).await?;
        }
        let id = Uuid::now_v7();
        let span = tracing::info_span!("schedule.fire", task_id = %id, schedule = %row.values.name, site = %home.uri);
        let message = crate::queue_site_task(
            &mut tx,
            &span,
            id,
            task_type,
            &home.uri,
            &args,
            &format!("schedule:{}", row.values.name),
        )
        .await?;
        stored::set_run_task(&mut tx, run, id).await?;
        if missed_open {
            stored::clear_alert(&mut tx, &row.values.name, Some(&home.uri), "missed").await?;
        }
        tx.commit().await?;
        span.in_scope(|| tracing::info!(%slot, "scheduled run fired"));
        publish(self.outbox, vec![message]);
        Ok(Outcome::Fired)
    }

    /// Raises or clears the schedule's alerts: failures in a row, overdue backups.
    #[allow(clippy::too_many_arguments)]
    async fn alerts(
        &self,
        conn: &mut PgConnection,
        row: &ScheduleRow,
        expr: &Expression,
        timing: &Timing,
        sites: &[&SiteHomeRow],
        recent: &RecentRuns,
        open: &HashSet<(Option<String>, String)>,
        report: &mut TickReport,
    ) -> Result<(), SchedulerError> {
        let is_open =
            |site: &str, kind: &str| open.contains(&(Some(site.to_string()), kind.to_string()));
        let threshold = u32::try_from(row.values.alert_after_failures).unwrap_or(0);
        let newest_backups = if row.values.kind == Kind::Backup.as_str() {
            newest_backups(conn).await?
        } else {
            HashMap::new()
        };
        // A slot before the schedule existed never had to make a backup.
        let last_closed = expr
            .last_at_or_before(self.now - timing.window)
            .filter(|slot| *slot > row.created_at);
        let mut notices = Vec::new();
        for home in sites {
            // Ended runs only: the one just fired says nothing yet.
            let ended: Vec<bool> = recent
                .get(&home.uri)
                .map(|runs| {
                    runs.iter()
                        .map(|s| state_of(s.as_deref()))
                        .filter(|s| *s != RunState::Unfinished)
                        .map(|s| s == RunState::Failed)
                        .collect()
                })
                .unwrap_or_default();
            let site = Some(home.uri.as_str());
            if row.values.kind == Kind::Drill.as_str() {
                // One failed drill is enough: the site's newest backup did not restore.
                let open = is_open(&home.uri, "drill_failed");
                match ended.first() {
                    Some(true) if !open => {
                        let message = "the restore drill of the site's newest backup failed: \
                                       see the drill task's log"
                            .to_string();
                        notices.extend(
                            alert(conn, &row.values.name, Some(home), "drill_failed", &message)
                                .await?,
                        );
                    }
                    Some(false) if open => {
                        stored::clear_alert(conn, &row.values.name, site, "drill_failed").await?;
                    }
                    _ => {}
                }
                continue;
            }
            let failing_open = is_open(&home.uri, "failing");
            if failing_streak(&ended, threshold) {
                if !failing_open {
                    let message = format!("the last {threshold} {} runs failed", row.values.kind);
                    notices.extend(
                        alert(conn, &row.values.name, Some(home), "failing", &message).await?,
                    );
                }
            } else if failing_open && ended.first() == Some(&false) {
                stored::clear_alert(conn, &row.values.name, site, "failing").await?;
            }
            if row.values.kind == Kind::Backup.as_str() {
                let newest = newest_backups.get(&home.uri).copied();
                let overdue_open = is_open(&home.uri, "overdue");
                if overdue(newest, last_closed, timing, self.now) {
                    if overdue_open {
                        continue;
                    }
                    let message = match newest {
                        Some(at) => format!(
                            "the newest good backup, of {at}, is older than the schedule allows"
                        ),
                        None => "the site has no good backup, and its schedule's window has passed"
                            .into(),
                    };
                    notices.extend(
                        alert(conn, &row.values.name, Some(home), "overdue", &message).await?,
                    );
                } else if overdue_open {
                    stored::clear_alert(conn, &row.values.name, site, "overdue").await?;
                }
            }
        }
        report.alerts += notices.len();
        publish(self.outbox, notices);
        Ok(())
    }
}

/// The task a job runs on a site.
fn task_type_of(job: &Job) -> Option<TaskType> {
    match job {
        Job::Cron {} => Some(TaskType::Cron),
        Job::Backup { .. } => Some(TaskType::Backup),
        Job::Prune { .. } => Some(TaskType::Prune),
        Job::Drill { .. } => Some(TaskType::Drill),
        Job::Usage {} => Some(TaskType::Usage),
    }
}

/// The task's arguments, named and decided now, as the API's intake does: a backup's file,
/// the backups a prune removes (the retention preview's answer).
async fn args_of(
    conn: &mut PgConnection,
    job: &Job,
    uri: &str,
) -> Result<TaskArgs, SchedulerError> {
    Ok(match job {
        // A target removed since the schedule was saved fails the task at planning, naming it.
        Job::Backup { targets } => TaskArgs::Backup(BackupTask {
            backup: Fresh::new().backup(uri, Compression::Zstd, "Generated by schedule"),
            targets: targets.clone(),
        }),
        Job::Prune { retention } => {
            let decided = berth_store::retention::decide_prune(conn, uri, retention)
                .await?
                .map_err(|e| SchedulerError::Job(e.0))?;
            TaskArgs::Prune(decided.task)
        }
        // The drill restores the newest backup still there when it starts.
        Job::Drill { .. } => TaskArgs::Drill(DrillTask::default()),
        Job::Cron {} | Job::Usage {} => TaskArgs::None,
    })
}

/// The sites a drill's slot takes: up to `sample` of them (those already recorded for the
/// slot count), those with a backup, the least recently verified first.
fn drill_sample<'a>(
    sites: &[&'a SiteHomeRow],
    recorded: &std::collections::HashSet<String>,
    verified: &HashMap<String, Option<DateTime<Utc>>>,
    sample: usize,
) -> Vec<&'a SiteHomeRow> {
    let room = sample.saturating_sub(recorded.len());
    let mut candidates: Vec<(&Option<DateTime<Utc>>, &'a SiteHomeRow)> = sites
        .iter()
        .filter(|h| !recorded.contains(&h.uri))
        .filter_map(|h| verified.get(&h.uri).map(|v| (v, *h)))
        .collect();
    // Never verified (None) sorts first, then the oldest verification; ties by name.
    candidates.sort_by(|a, b| a.0.cmp(b.0).then_with(|| a.1.uri.cmp(&b.1.uri)));
    candidates.into_iter().take(room).map(|(_, h)| h).collect()
}

/// Each site's newest backup that is still there.
async fn newest_backups(
    conn: &mut PgConnection,
) -> Result<HashMap<String, DateTime<Utc>>, SchedulerError> {
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT site, max(created_at) FROM backups WHERE deleted_at IS NULL GROUP BY site",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Raises an alert (unless it is open already) and, when raised, its notice in the same
/// transaction: the outbox row to publish after commit.
async fn alert(
    conn: &mut PgConnection,
    schedule: &str,
    home: Option<&SiteHomeRow>,
    kind: &str,
    message: &str,
) -> Result<Vec<OutboxRow>, SchedulerError> {
    let site = home.map(|h| h.uri.as_str());
    let Some(raised) = stored::raise_alert(conn, schedule, site, kind, message).await? else {
        return Ok(Vec::new());
    };
    tracing::warn!(schedule, site, kind, message, "schedule alert raised");
    let notice = Notice {
        id: Uuid::now_v7(),
        at: raised.raised_at,
        event: NoticeEvent::ScheduleAlert {
            schedule: schedule.to_string(),
            site: site.map(str::to_string),
            kind: kind.to_string(),
            message: message.to_string(),
            client: home.map(|h| h.client_id.to_string()),
        },
    };
    let row = berth_store::outbox::enqueue(
        conn,
        OutboxMessage {
            exchange: exchanges::NOTICES,
            routing_key: notice.event.kind(),
            message_id: notice.id.to_string(),
            payload: serde_json::to_value(&notice).expect("serialisable"),
            traceparent: "",
            attempt: 1,
            task_id: None,
        },
    )
    .await?;
    Ok(vec![row])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(uri: &str) -> SiteHomeRow {
        SiteHomeRow {
            uri: uri.into(),
            platform: "p".into(),
            client: None,
            client_id: uuid::Uuid::nil(),
            web_server: "w".into(),
            db_server: "d".into(),
            has_cron_key: true,
        }
    }

    #[test]
    fn a_drill_takes_the_least_recently_verified_sites_with_a_backup() {
        let (a, b, c, d) = (
            home("a.test"),
            home("b.test"),
            home("c.test"),
            home("d.test"),
        );
        let sites = vec![&a, &b, &c, &d];
        let t = |s: i64| Some(DateTime::from_timestamp(1_780_000_000 + s, 0).unwrap());
        let verified: HashMap<String, Option<DateTime<Utc>>> = [
            ("a.test".to_string(), t(10)),
            ("b.test".to_string(), None),
            ("c.test".to_string(), t(5)),
        ]
        .into_iter()
        .collect();
        let uris = |v: Vec<&SiteHomeRow>| v.iter().map(|h| h.uri.clone()).collect::<Vec<_>>();
        let none = std::collections::HashSet::new();
        // Never verified first, then the oldest; d has no backup: never drilled.
        assert_eq!(
            uris(drill_sample(&sites, &none, &verified, 2)),
            ["b.test", "c.test"]
        );
        assert_eq!(
            uris(drill_sample(&sites, &none, &verified, 9)),
            ["b.test", "c.test", "a.test"]
        );
        // Those recorded for the slot already count toward the sample.
        let recorded: std::collections::HashSet<String> = ["b.test".to_string()].into();
        assert_eq!(
            uris(drill_sample(&sites, &recorded, &verified, 2)),
            ["c.test"]
        );
        assert!(drill_sample(&sites, &recorded, &verified, 1).is_empty());
    }
}
