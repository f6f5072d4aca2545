//! The dispatcher: Aegir's `hosting-dispatch`, driven by messages instead of a cron poll.
//!
//! Every handler runs in one PostgreSQL transaction that first takes the target's advisory
//! lock and then the task's row lock (always in that order), so that:
//! - one task at a time runs per target, and tasks on different targets run side by side;
//! - a redelivered message finds the state already moved and changes nothing;
//! - the next message (a step command, a `TaskQueued`) is written to the outbox in the same
//!   transaction as the state it follows from.
//!
//! Each handler loads the task and its steps, asks `berth_hosting::flow` (pure functions)
//! what follows, and applies the answer: step statuses, the effects of a step's output or
//! a task's end (`berth_hosting::effects`), log lines and the next messages.

use berth_contracts::steps::SiteDbSecret;
use berth_contracts::{
    AttemptRecord, DeadLetterMessage, ErrorKind, LogLevel, NoticeEvent, SealedSecrets, StepCommand,
    StepEvent, StepOutcome, StepPhase, StepStatus, StepStop, TargetKind, TaskArgs, TaskQueued,
    TaskStatus, TaskType, WorkerLog, exchanges,
};
use berth_hosting::effects::{self, Effect};
use berth_hosting::flow::{self, CancelAction, Decision, Event, Next, StepState, TaskState};
use berth_hosting::offsite::OffsiteFacts;
use berth_hosting::plans::{
    plan_clone, plan_drill, plan_migrate, plan_platform_task, plan_server_task,
    plan_site_task_offsite,
};
use berth_store::outbox::{self, OutboxMessage, OutboxRow};
use berth_store::tasks::{self as t, NewStep, StepChange, StepRow, TaskRow};
use berth_store::{PgConnection, Store, dead, offsite, platforms, servers, sites};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl DispatchError {
    /// PostgreSQL refused the data itself (a data exception, a constraint, a statement it
    /// cannot run): trying again will not help. An outage, a deadlock or a lack of
    /// resources is not this: those are retried for as long as they last.
    pub fn is_refusal(&self) -> bool {
        let e = match self {
            Self::Store(berth_store::StoreError::Db(e)) | Self::Db(e) => e,
            Self::Store(_) => return false,
        };
        matches!(e, sqlx::Error::Database(d)
            if d.code().is_some_and(|c| ["22", "23", "42"].contains(&&c[..2.min(c.len())])))
    }
}

type Result<T> = std::result::Result<T, DispatchError>;

/// A dispatcher transaction and the outbox rows it wrote, which are published once it has
/// committed (and forgotten if it rolls back).
pub struct Tx {
    conn: sqlx::Transaction<'static, sqlx::Postgres>,
    written: Vec<OutboxRow>,
    /// Task log lines, written in one statement at commit.
    logs: Vec<t::NewLog>,
}

impl Tx {
    async fn begin(store: &Store) -> Result<Self> {
        Ok(Self {
            conn: store.pool.begin().await?,
            written: Vec::new(),
            logs: Vec::new(),
        })
    }

    /// Commits; the rows to publish now.
    async fn commit(mut self) -> Result<Vec<OutboxRow>> {
        t::append_logs(&mut self.conn, &self.logs).await?;
        self.conn.commit().await?;
        Ok(self.written)
    }
}

/// The target of a message's task: carried by the message, or read when it is not.
async fn target_for(tx: &mut Tx, given: Option<&str>, task_id: Uuid) -> Result<Option<String>> {
    match given {
        Some(t) => Ok(Some(t.to_string())),
        None => Ok(t::target_of(tx, task_id).await?),
    }
}

/// Notes a status change in a list of steps read earlier in the same transaction.
fn set_status(steps: &mut [StepRow], id: Uuid, to: StepStatus) {
    if let Some(s) = steps.iter_mut().find(|s| s.id == id) {
        s.status = to.as_str().to_string();
    }
}

impl std::ops::Deref for Tx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}

/// The password of the database a restore, migrate or clone moves the site to, kept with
/// the task; the worker gets it as the site's (`secrets.site_db`): it acts on that database.
const SECRET_SITE_DB_NEXT: &str = "site_db_next";

#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    /// Asked, when a running task is cancelled, whether anyone consumes its step's queue.
    broker: Option<berth_broker::Broker>,
    /// Drill sites are named under it (`BERTH_DRILL_DOMAIN`).
    drill_domain: String,
}

fn task_state(task: &TaskRow) -> TaskState {
    TaskState {
        status: task.status(),
        cancel_requested: task.cancel_requested_at.is_some(),
    }
}

fn step_states(steps: &[StepRow]) -> Vec<StepState> {
    steps
        .iter()
        .map(|s| StepState {
            id: s.id,
            status: s.status(),
            undoable: s.compensation.is_some(),
        })
        .collect()
}

/// The status a step has while `phase` of it is with a worker.
fn live_status(phase: StepPhase) -> StepStatus {
    match phase {
        StepPhase::Run => StepStatus::Running,
        StepPhase::Compensate => StepStatus::Compensating,
    }
}

/// The task's arguments as its type has them (a task stored unreadable plans nothing and
/// changes nothing at its end).
fn task_args(task: &TaskRow) -> std::result::Result<(TaskType, TaskArgs), String> {
    let task_type = TaskType::parse(&task.task_type).map_err(|e| e.to_string())?;
    let args = TaskArgs::from_stored(task_type, &task.args).map_err(|e| {
        format!(
            "the task's arguments do not fit a {} task: {e}",
            task_type.as_str()
        )
    })?;
    Ok((task_type, args))
}

impl Dispatcher {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            broker: None,
            drill_domain: berth_hosting::drills::DEFAULT_DRILL_DOMAIN.to_string(),
        }
    }

    /// Names drill sites under `domain` (the one the API refuses customer sites under).
    pub fn with_drill_domain(mut self, domain: &str) -> Self {
        self.drill_domain = domain.to_string();
        self
    }

    /// Lets a cancel find out whether a running step's queue has a consumer.
    pub fn with_broker(mut self, broker: berth_broker::Broker) -> Self {
        self.broker = Some(broker);
        self
    }

    async fn consumers(&self, step: &StepRow) -> Option<u32> {
        let queue = berth_broker::topology::work_queue(&step.service, &step.server);
        match self.broker.as_ref()?.queue_stats(&queue).await {
            Ok(q) => Some(q.consumers),
            Err(e) => {
                tracing::debug!(%queue, error = %e, "consumers of a work queue not known");
                None
            }
        }
    }

    /// A cancel was asked for while the task runs (the API set `cancel_requested_at`).
    async fn cancel_running(&self, tx: &mut Tx, task: &TaskRow) -> Result<()> {
        let mut steps = t::steps_of(tx, task.id).await?;
        let running = steps
            .iter()
            .find(|s| s.status() == StepStatus::Running)
            .cloned();
        let consumers = match &running {
            Some(step) => self.consumers(step).await,
            None => None,
        };
        match flow::cancel_action(&step_states(&steps), consumers) {
            CancelAction::Wait => Ok(()),
            CancelAction::Stop(_) => {
                let step = running.expect("a running step to stop");
                log(
                    tx,
                    task,
                    Some(step.id),
                    LogLevel::Warning,
                    &format!("{}: ordering its worker to stop it", describe(&step)),
                );
                let row = outbox::enqueue(
                    tx,
                    OutboxMessage {
                        exchange: exchanges::CONTROL,
                        routing_key: "",
                        message_id: format!("{}:stop", step.id),
                        payload: serde_json::to_value(StepStop {
                            task_id: task.id,
                            step_id: step.id,
                        })
                        .expect("serialisable"),
                        traceparent: &task.traceparent,
                        attempt: 1,
                        task_id: Some(task.id),
                    },
                )
                .await?;
                tx.written.push(row);
                Ok(())
            }
            CancelAction::Abandon(_) => {
                let step = running.expect("a running step to give up");
                let why = format!(
                    "given up: its task was cancelled and no {} worker consumes `{}`",
                    step.service,
                    berth_broker::topology::work_queue(&step.service, &step.server)
                );
                if t::transition_step(
                    tx,
                    step.id,
                    &[StepStatus::Running],
                    StepStatus::Error,
                    StepChange {
                        error: Some(&why),
                        finished: true,
                        ..Default::default()
                    },
                )
                .await?
                {
                    log(
                        tx,
                        task,
                        Some(step.id),
                        LogLevel::Warning,
                        &format!("{}: {why}", describe(&step)),
                    );
                    set_status(&mut steps, step.id, StepStatus::Error);
                }
                let next = flow::undo(task_state(task), &step_states(&steps));
                self.follow(tx, task, &steps, next).await
            }
            CancelAction::Undo => {
                let next = flow::undo(task_state(task), &step_states(&steps));
                self.follow(tx, task, &steps, next).await
            }
        }
    }

    /// `state.tasks`: a task was queued (or put back by a replay).
    pub async fn on_task_queued(&self, msg: TaskQueued) -> Result<Vec<OutboxRow>> {
        let task_id = msg.task_id;
        let mut tx = Tx::begin(&self.store).await?;
        let Some(target) = target_for(&mut tx, msg.target.as_deref(), task_id).await? else {
            tracing::warn!(%task_id, "task to dispatch does not exist; dropped");
            return Ok(Vec::new());
        };
        t::lock_target(&mut tx, &target).await?;
        // A cancel asked for while the task runs comes this way too.
        if let Some(task) = t::lock_task(&mut tx, task_id).await?
            && task.status() == TaskStatus::Processing
            && task.cancel_requested_at.is_some()
        {
            self.cancel_running(&mut tx, &task).await?;
        }
        // Start the oldest queued task of the target, if the target is free: FIFO per target.
        if let Some(next) = t::startable(&mut tx, &target).await? {
            self.start(&mut tx, next).await?;
        }
        tx.commit().await
    }

    /// `state.events`: a worker reports progress, a retry, the success of a step or its
    /// stop.
    pub async fn on_step_event(&self, ev: StepEvent) -> Result<Vec<OutboxRow>> {
        let mut tx = Tx::begin(&self.store).await?;
        let Some(target) = target_for(&mut tx, ev.target.as_deref(), ev.task_id).await? else {
            return Ok(Vec::new());
        };
        t::lock_target(&mut tx, &target).await?;
        let Some(task) = t::lock_task(&mut tx, ev.task_id).await? else {
            return Ok(Vec::new());
        };
        let mut steps = t::steps_of(&mut tx, task.id).await?;
        let Some(step) = steps.iter().find(|s| s.id == ev.step_id).cloned() else {
            tracing::warn!(task_id = %task.id, step_id = %ev.step_id, "event for an unknown step; dropped");
            return Ok(Vec::new());
        };
        let event = match &ev.outcome {
            StepOutcome::Progress => Event::Progress,
            StepOutcome::Retrying { .. } => Event::Retrying,
            StepOutcome::Succeeded { warning, .. } => Event::Succeeded { warning: *warning },
            StepOutcome::Stopped { started } => Event::Stopped { started: *started },
        };
        let decision = flow::decide(
            task_state(&task),
            &step_states(&steps),
            step.id,
            ev.phase,
            event,
        );
        let (to, finished, next) = match decision {
            Decision::Ignore => {
                if matches!(ev.outcome, StepOutcome::Succeeded { .. }) {
                    tracing::debug!(step_id = %step.id, "result already recorded; redelivery ignored");
                }
                return tx.commit().await;
            }
            Decision::Record => {
                self.record(&mut tx, &task, &step, &ev).await?;
                return tx.commit().await;
            }
            Decision::Move { to, finished, next } => (to, finished, next),
        };
        let stopped = match &ev.outcome {
            StepOutcome::Stopped { started: true } => {
                Some("stopped midway: its task was cancelled")
            }
            StepOutcome::Stopped { started: false } => Some("not started: its task was cancelled"),
            _ => None,
        };
        // A result of a compensation carries no attempt of the run.
        let change = match ev.phase {
            StepPhase::Run => StepChange {
                attempt: Some(ev.attempt as i32),
                error: stopped,
                started_at: Some(ev.started_at),
                finished,
            },
            StepPhase::Compensate => StepChange {
                error: stopped,
                finished,
                ..Default::default()
            },
        };
        let moved =
            t::transition_step(&mut tx, step.id, &[live_status(ev.phase)], to, change).await?;
        if !moved {
            return tx.commit().await;
        }
        match (&ev.outcome, ev.phase) {
            (StepOutcome::Succeeded { output, .. }, StepPhase::Run) => {
                // Only the type is needed here: the arguments are read at the task's end.
                if let Ok(task_type) = TaskType::parse(&task.task_type)
                    && let Ok(work) = step.work(StepPhase::Run)
                {
                    let task_ref = effects::TaskRef {
                        task_type,
                        target: &task.target,
                    };
                    let found = effects::of_step(task_ref, &step.server, &work, output);
                    self.apply(&mut tx, &task, Some(step.id), found).await?;
                }
                append_worker_log(&mut tx, &task, &step, &ev.log);
                let ms = (ev.at - ev.started_at).num_milliseconds();
                log(
                    &mut tx,
                    &task,
                    Some(step.id),
                    LogLevel::Info,
                    &format!(
                        "{}: {} on attempt {} ({ms} ms, {})",
                        describe(&step),
                        to.as_str(),
                        ev.attempt,
                        ev.worker
                    ),
                );
            }
            (StepOutcome::Succeeded { .. }, StepPhase::Compensate) => {
                append_worker_log(&mut tx, &task, &step, &ev.log);
                log(
                    &mut tx,
                    &task,
                    Some(step.id),
                    LogLevel::Info,
                    &format!("{}: taken back", describe(&step)),
                );
            }
            (StepOutcome::Stopped { .. }, StepPhase::Run) => {
                append_worker_log(&mut tx, &task, &step, &ev.log);
                log(
                    &mut tx,
                    &task,
                    Some(step.id),
                    LogLevel::Warning,
                    &format!(
                        "{}: {} ({})",
                        describe(&step),
                        stopped.unwrap_or_default(),
                        ev.worker
                    ),
                );
            }
            _ => {}
        }
        set_status(&mut steps, step.id, to);
        self.follow(&mut tx, &task, &steps, next).await?;
        tx.commit().await
    }

    /// A live step's progress or retry: its log lines and (for a retry) the attempt.
    async fn record(
        &self,
        tx: &mut Tx,
        task: &TaskRow,
        step: &StepRow,
        ev: &StepEvent,
    ) -> Result<()> {
        match &ev.outcome {
            StepOutcome::Retrying { error, retry_in_ms } => {
                let record = AttemptRecord {
                    attempt: ev.attempt,
                    at: ev.at,
                    error: error.clone(),
                    kind: ErrorKind::Transient,
                    retry_in_ms: Some(*retry_in_ms),
                    worker: ev.worker.clone(),
                };
                // A redelivered retry report records nothing twice.
                if t::record_attempt(tx, step.id, &record).await? {
                    append_worker_log(tx, task, step, &ev.log);
                    log(
                        tx,
                        task,
                        Some(step.id),
                        LogLevel::Warning,
                        &format!(
                            "{}: attempt {} failed: {error}; retrying in {retry_in_ms} ms",
                            describe(step),
                            ev.attempt
                        ),
                    );
                }
            }
            _ => append_worker_log(tx, task, step, &ev.log),
        }
        Ok(())
    }

    /// A message about this task cannot be recorded (it fails again and again, or it is of
    /// an older berth): the task ends in error with the reason in its log, and the next
    /// task of its target starts. Its steps stay as they are, so an operator sees where it
    /// stood.
    pub async fn fail_task(&self, task_id: Uuid, reason: &str) -> Result<Vec<OutboxRow>> {
        let mut tx = Tx::begin(&self.store).await?;
        let Some(target) = target_for(&mut tx, None, task_id).await? else {
            return Ok(Vec::new());
        };
        t::lock_target(&mut tx, &target).await?;
        let Some(task) = t::lock_task(&mut tx, task_id).await? else {
            return Ok(Vec::new());
        };
        if !task.status().is_finished() {
            self.fail_here(&mut tx, &task, reason).await?;
        }
        tx.commit().await
    }

    /// Ends the task in error now: a step whose result could not be recorded is not left
    /// `running` in a task that has ended; it ends with the task, saying why.
    async fn fail_here(&self, tx: &mut Tx, task: &TaskRow, reason: &str) -> Result<()> {
        for step in t::steps_of(tx, task.id).await? {
            t::transition_step(
                tx,
                step.id,
                &[StepStatus::Running, StepStatus::Compensating],
                StepStatus::Error,
                StepChange {
                    error: Some(reason),
                    finished: true,
                    ..Default::default()
                },
            )
            .await?;
        }
        log(tx, task, None, LogLevel::Error, reason);
        self.finish(tx, task, TaskStatus::Error).await
    }

    /// `state.dead`: a step failed for good (permanent error, attempts exhausted, a time
    /// limit, no worker, or a worker crash loop caught by the queue's delivery limit).
    pub async fn on_dead_letter(&self, msg: DeadLetterMessage) -> Result<Vec<OutboxRow>> {
        let cmd = &msg.command;
        let mut tx = Tx::begin(&self.store).await?;
        let Some(target) = target_for(&mut tx, Some(&cmd.target), cmd.task_id).await? else {
            return Ok(Vec::new());
        };
        t::lock_target(&mut tx, &target).await?;
        let Some(task) = t::lock_task(&mut tx, cmd.task_id).await? else {
            return Ok(Vec::new());
        };
        let mut steps = t::steps_of(&mut tx, task.id).await?;
        let Some(step) = steps.iter().find(|s| s.id == cmd.step_id).cloned() else {
            return Ok(Vec::new());
        };
        let mut payload = serde_json::to_value(cmd).expect("serialisable");
        if let Some(o) = payload.as_object_mut() {
            o.remove("secrets");
            // For the operator reading it: what the step was, beside its typed work.
            o.insert("service".into(), cmd.service().as_str().into());
            o.insert("action".into(), cmd.action().into());
        }
        let recorded = dead::insert(
            &mut tx,
            dead::NewDead {
                task_id: task.id,
                step_id: step.id,
                routing_key: &msg.routing_key,
                error: &msg.error,
                history: &msg.history,
                payload,
            },
        )
        .await?;
        let decision = flow::decide(
            task_state(&task),
            &step_states(&steps),
            step.id,
            cmd.phase,
            Event::Failed,
        );
        let Decision::Move { to, finished, next } = decision else {
            return tx.commit().await;
        };
        let moved = recorded
            && t::transition_step(
                &mut tx,
                step.id,
                &[live_status(cmd.phase)],
                to,
                StepChange {
                    attempt: msg.history.iter().map(|h| h.attempt as i32).max(),
                    error: Some(&msg.error),
                    started_at: msg.history.first().map(|h| h.at),
                    finished,
                },
            )
            .await?;
        if moved {
            // Keep the attempts seen before (a replayed step goes on counting).
            let mut history = step.history();
            for h in &msg.history {
                if !history.iter().any(|x| x.attempt == h.attempt) {
                    history.push(h.clone());
                }
            }
            t::set_step_history(&mut tx, step.id, &history).await?;
            append_worker_log(&mut tx, &task, &step, &msg.log);
            let what = match cmd.phase {
                StepPhase::Run => "failed",
                StepPhase::Compensate => "could not be taken back",
            };
            log(
                &mut tx,
                &task,
                Some(step.id),
                LogLevel::Error,
                &format!(
                    "{} {what} after {} attempt(s): {}; sent to the dead letters",
                    describe(&step),
                    msg.history.len().max(1),
                    msg.error
                ),
            );
            set_status(&mut steps, step.id, to);
            self.follow(&mut tx, &task, &steps, next).await?;
        }
        tx.commit().await
    }

    /// Plans (first time) and starts a queued task. The target lock is held by the caller.
    async fn start(&self, tx: &mut Tx, task_id: Uuid) -> Result<()> {
        let Some(task) = t::lock_task(tx, task_id).await? else {
            return Ok(());
        };
        if task.status() != TaskStatus::Queued {
            return Ok(());
        }
        // A task that never started has no steps yet: no need to read them.
        let mut steps = match task.started_at {
            None => Vec::new(),
            Some(_) => t::steps_of(tx, task.id).await?,
        };
        if steps.is_empty() {
            match self.plan(tx, &task).await? {
                Ok(planned) => {
                    let n = planned.len();
                    steps = planned;
                    t::set_task_status(tx, task.id, TaskStatus::Processing).await?;
                    log(
                        tx,
                        &task,
                        None,
                        LogLevel::Info,
                        &format!("started: {n} step(s) planned"),
                    );
                }
                Err(why) => {
                    log(tx, &task, None, LogLevel::Error, &why);
                    return Box::pin(self.finish(tx, &task, TaskStatus::Error)).await;
                }
            }
        } else {
            t::set_task_status(tx, task.id, TaskStatus::Processing).await?;
            log(tx, &task, None, LogLevel::Info, "resumed");
        }
        self.follow(tx, &task, &steps, flow::advance(&step_states(&steps)))
            .await
    }

    /// Builds and stores the task's plan (its steps, in order); `Err` is a reason the task
    /// cannot run.
    async fn plan(
        &self,
        tx: &mut Tx,
        task: &TaskRow,
    ) -> Result<std::result::Result<Vec<StepRow>, String>> {
        let (task_type, args) = match task_args(task) {
            Ok(x) => x,
            Err(why) => return Ok(Err(why)),
        };
        let planned = match TargetKind::parse(&task.target_kind) {
            Some(TargetKind::Server) => {
                let Some(server) = servers::get_server(tx, &task.target).await? else {
                    return Ok(Err(format!("server `{}` no longer exists", task.target)));
                };
                plan_server_task(task_type, &args, &server.facts())
            }
            Some(TargetKind::Platform) => {
                let Some(p) = platforms::facts(tx, &task.target).await? else {
                    return Ok(Err(format!("platform `{}` does not exist", task.target)));
                };
                plan_platform_task(task_type, &p)
            }
            Some(TargetKind::Site) => {
                let Some(site) = sites::facts(tx, &task.target).await? else {
                    return Ok(Err(format!("site `{}` does not exist", task.target)));
                };
                match &args {
                    TaskArgs::Clone(c) => match sites::facts(tx, &c.new_site).await? {
                        Some(n) => plan_clone(&site, &n, c),
                        None => Err(format!(
                            "the clone's new site `{}` does not exist",
                            c.new_site
                        )),
                    },
                    TaskArgs::Drill(d) => {
                        let backup = match d.backup {
                            Some(id) => sites::backup(tx, &site.uri, id).await?,
                            None => sites::newest_backup(tx, &site.uri).await?,
                        };
                        let Some(b) = backup else {
                            return Ok(Err(match d.backup {
                                Some(id) => format!(
                                    "site `{}` has no backup {id} any more: nothing to drill",
                                    site.uri
                                ),
                                None => format!(
                                    "site `{}` has no backup: nothing to drill (back it up first)",
                                    site.uri
                                ),
                            }));
                        };
                        // A uid of the site range that no site has: planned once, stored
                        // with the steps.
                        let uid = sites::new_unix_uid(tx).await?;
                        let facts = berth_hosting::drills::drill_facts(
                            task.id,
                            &self.drill_domain,
                            uid,
                            berth_hosting::drills::DrillBackup {
                                id: b.id,
                                path: b.path,
                                server: b.server,
                            },
                        );
                        let copies = offsite::copies_of_backups(tx, &[facts.backup.id]).await?;
                        plan_drill(&site, &facts, &copies)
                    }
                    TaskArgs::Migrate(m) => {
                        let Some(p) = platforms::facts(tx, &m.to.platform).await? else {
                            return Ok(Err(format!("platform `{}` does not exist", m.to.platform)));
                        };
                        let Some(db) = servers::get_server(tx, &m.to.db_server).await? else {
                            return Ok(Err(format!("server `{}` does not exist", m.to.db_server)));
                        };
                        plan_migrate(&site, &p, &db.facts(), m)
                    }
                    _ => {
                        // A backup's targets, the copies of the backup a restore or delete
                        // acts on.
                        let mut off = OffsiteFacts::default();
                        match &args {
                            TaskArgs::Backup(b) if !b.targets.is_empty() => {
                                match offsite::target_facts(tx, &b.targets).await? {
                                    Ok(found) => off.targets = found,
                                    Err(why) => return Ok(Err(why)),
                                }
                            }
                            TaskArgs::Restore(r) => {
                                off.copies =
                                    offsite::copies_of_backups(tx, &[r.restore_from.id]).await?;
                            }
                            TaskArgs::BackupDelete(d) => {
                                off.copies = offsite::copies_of_backups(tx, &[d.backup.id]).await?;
                            }
                            TaskArgs::Prune(p) => {
                                let mut ids: Vec<Uuid> = p.remove.iter().map(|b| b.id).collect();
                                ids.extend(p.copies.iter().flatten().map(|c| c.backup));
                                off.copies = offsite::copies_of_backups(tx, &ids).await?;
                            }
                            _ => {}
                        }
                        plan_site_task_offsite(task_type, &site, &args, &off)
                    }
                }
            }
            None => Err(format!("unknown target kind `{}`", task.target_kind)),
        };
        let plan = match planned {
            Ok(plan) => plan,
            Err(why) => return Ok(Err(why)),
        };
        let stored: Vec<(serde_json::Value, Option<serde_json::Value>, Option<String>)> = plan
            .steps
            .iter()
            .map(|s| {
                (
                    serde_json::to_value(&s.work).expect("steps serialise"),
                    s.undo
                        .as_ref()
                        .map(|u| serde_json::to_value(u).expect("steps serialise")),
                    s.secrets.to_text(),
                )
            })
            .collect();
        let new: Vec<NewStep> = plan
            .steps
            .iter()
            .zip(&stored)
            .enumerate()
            .map(|(i, (s, (work, undo, secret)))| NewStep {
                id: Uuid::now_v7(),
                position: i as i32 + 1,
                service: s.service().as_str(),
                server: &s.server,
                action: s.action(),
                args: work,
                compensation: s.undo.as_ref().map(|u| u.action()),
                secret: secret.as_deref(),
                undo: undo.as_ref(),
            })
            .collect();
        if new.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        Ok(Ok(t::insert_steps(tx, task.id, &new).await?))
    }

    /// Does what the decision said comes next: sends a step (to run, or to take it back),
    /// ends the task, or waits.
    async fn follow(
        &self,
        tx: &mut Tx,
        task: &TaskRow,
        steps: &[StepRow],
        next: Next,
    ) -> Result<()> {
        let (step_id, phase) = match next {
            Next::Wait => return Ok(()),
            Next::Finish(status) => return self.finish(tx, task, status).await,
            Next::Send { step, phase } => (step, phase),
        };
        let Some(step) = steps.iter().find(|s| s.id == step_id) else {
            return Ok(());
        };
        // A step planned by an older berth (or stored unreadable) is not sent: the task
        // ends, saying how to run it again.
        let work = match (step.work(phase), step.secret_needs()) {
            (Ok(work), Ok(needs)) => (work, needs),
            (Err(why), _) | (_, Err(why)) => return self.fail_here(tx, task, &why).await,
        };
        match phase {
            StepPhase::Run => {
                t::transition_step(
                    tx,
                    step.id,
                    &[StepStatus::Pending],
                    StepStatus::Running,
                    StepChange::default(),
                )
                .await?;
            }
            StepPhase::Compensate => {
                // A step stopped midway is being taken back already.
                t::transition_step(
                    tx,
                    step.id,
                    &[StepStatus::Success, StepStatus::Warning],
                    StepStatus::Compensating,
                    StepChange::default(),
                )
                .await?;
                log(
                    tx,
                    task,
                    Some(step.id),
                    LogLevel::Warning,
                    &format!("taking back {}", describe(step)),
                );
            }
        }
        self.send(tx, task, step, phase, work).await
    }

    async fn send(
        &self,
        tx: &mut Tx,
        task: &TaskRow,
        step: &StepRow,
        phase: StepPhase,
        (work, needs): (berth_contracts::Work, berth_contracts::SecretNeeds),
    ) -> Result<()> {
        let mut secrets = SealedSecrets::default();
        if needs.db_admin {
            secrets.db_admin = servers::get_server(tx, &step.server)
                .await?
                .and_then(|s| s.db_admin_password_sealed);
        }
        secrets.site_db = match needs.site_db {
            Some(SiteDbSecret::Current) => sites::db_password_sealed(tx, &task.target).await?,
            Some(SiteDbSecret::Next) => t::task_secret(tx, task.id, SECRET_SITE_DB_NEXT).await?,
            Some(SiteDbSecret::Drill) => {
                secrets.site_db_derived = true;
                None
            }
            None => None,
        };
        if needs.cron_key {
            secrets.cron_key = berth_store::cron::cron_key_sealed(tx, &task.target).await?;
        }
        if needs.backup_target
            && let Some(target) = work.backup_target()
        {
            secrets.backup_target = offsite::target_secret_sealed(tx, &target.name).await?;
        }
        let cmd = StepCommand {
            task_id: task.id,
            step_id: step.id,
            task_type: task.task_type.clone(),
            target: task.target.clone(),
            server: step.server.clone(),
            phase,
            work,
            secrets,
        };
        let message_id = match phase {
            StepPhase::Run => step.id.to_string(),
            StepPhase::Compensate => format!("{}:compensate", step.id),
        };
        let row = outbox::enqueue(
            tx,
            OutboxMessage {
                exchange: exchanges::WORK,
                routing_key: &cmd.routing_key(),
                message_id,
                payload: serde_json::to_value(&cmd).expect("serialisable"),
                traceparent: &task.traceparent,
                attempt: step.attempts + 1,
                task_id: Some(task.id),
            },
        )
        .await?;
        tx.written.push(row);
        Ok(())
    }

    async fn finish(&self, tx: &mut Tx, task: &TaskRow, status: TaskStatus) -> Result<()> {
        t::set_task_status(tx, task.id, status).await?;
        let kind = TargetKind::parse(&task.target_kind);
        if let (Some(kind), Ok((task_type, args))) = (kind, task_args(task)) {
            let site = match kind {
                TargetKind::Site => sites::get_site(tx, &task.target).await?,
                _ => None,
            };
            let (found, note) = effects::of_finish(effects::Ended {
                kind,
                task_type,
                target: &task.target,
                args: &args,
                ok: matches!(status, TaskStatus::Success | TaskStatus::Warning),
                site_status: site.as_ref().map(|s| s.status.as_str()),
            });
            self.apply(tx, task, None, found).await?;
            if let Some(note) = note {
                log(tx, task, None, LogLevel::Info, &note);
            }
            let ok = matches!(status, TaskStatus::Success | TaskStatus::Warning);
            match (task_type, site) {
                (TaskType::Install, Some(site)) if ok => {
                    let event = NoticeEvent::SiteInstalled {
                        site: site.uri,
                        platform: site.platform,
                        task_id: task.id,
                        client: Some(site.client_id.to_string()),
                        client_email: site.client_email,
                        login_link: site.login_link,
                    };
                    notify(tx, task, event).await?;
                }
                (TaskType::Delete, Some(site)) if ok => {
                    let event = NoticeEvent::SiteDeleted {
                        site: site.uri,
                        task_id: task.id,
                        client: Some(site.client_id.to_string()),
                    };
                    notify(tx, task, event).await?;
                }
                _ => {}
            }
        }
        if let (Some(task_type), Some(target_kind)) = (
            TaskType::from_name(&task.task_type),
            TargetKind::parse(&task.target_kind),
        ) {
            let client = match target_kind {
                TargetKind::Site => sites::get_site(tx, &task.target)
                    .await?
                    .map(|s| s.client_id.to_string()),
                _ => None,
            };
            let event = NoticeEvent::TaskFinished {
                task_id: task.id,
                task_type,
                target: task.target.clone(),
                target_kind,
                status,
                trace_id: task.trace_id.clone(),
                client,
            };
            notify(tx, task, event).await?;
        }
        let level = match status {
            TaskStatus::Success => LogLevel::Info,
            TaskStatus::Warning => LogLevel::Warning,
            _ => LogLevel::Error,
        };
        log(
            tx,
            task,
            None,
            level,
            &format!("finished: {}", status.as_str()),
        );
        tracing::info!(task_id = %task.id, task_type = %task.task_type, target = %task.target,
            status = status.as_str(), "task finished");
        // The target is free: start the next task waiting for it.
        if let Some(next) = t::next_queued(tx, &task.target).await? {
            Box::pin(self.start(tx, next)).await?;
        }
        Ok(())
    }

    /// Applies effects to the state; `step`: the step whose output they come from.
    async fn apply(
        &self,
        tx: &mut Tx,
        task: &TaskRow,
        step: Option<Uuid>,
        found: Vec<Effect>,
    ) -> Result<()> {
        for effect in found {
            match effect {
                Effect::RecordScan { platform, scan } => {
                    platforms::record_scan(
                        tx,
                        &platform,
                        Some(scan.drupal_major),
                        Some(&scan.core_version),
                        &scan.packages,
                        &scan.sites,
                    )
                    .await?;
                }
                Effect::RecordBackup {
                    site,
                    server,
                    made,
                    description,
                } => {
                    let backup_id = step.unwrap_or_else(Uuid::now_v7);
                    sites::record_backup(
                        tx,
                        sites::NewBackup {
                            id: backup_id,
                            site: &site,
                            server: &server,
                            file: &made.file,
                            path: &made.path,
                            size: made.size,
                            sha256: &made.sha256,
                            compression: made.compression.as_str(),
                            description: &description,
                            task_id: task.id,
                        },
                    )
                    .await?;
                    let client = sites::get_site(tx, &site)
                        .await?
                        .map(|s| s.client_id.to_string());
                    let event = NoticeEvent::BackupMade {
                        backup_id,
                        size: made.size,
                        site,
                        task_id: task.id,
                        client,
                    };
                    notify(tx, task, event).await?;
                }
                Effect::RecordPackages { site, packages } => {
                    sites::record_packages(tx, &site, &packages).await?;
                }
                Effect::SetLoginLink { site, link } => {
                    sites::set_login_link(tx, &site, &link).await?;
                }
                Effect::MarkBackupDeleted { server, path } => {
                    sites::mark_backup_deleted(tx, &server, &path).await?;
                }
                Effect::RecordCopy { server, copy } => {
                    let id = step.unwrap_or_else(Uuid::now_v7);
                    if !offsite::record_copy(tx, id, &server, &copy).await? {
                        log(
                            tx,
                            task,
                            step,
                            LogLevel::Error,
                            &format!(
                                "the copy {} on `{}` (sha256 {}, {} bytes) is not the backup {} \
                                 as recorded: not recorded as its copy",
                                copy.key, copy.target, copy.sha256, copy.size, copy.path
                            ),
                        );
                    }
                }
                Effect::MarkCopyDeleted { target, key } => {
                    offsite::mark_copy_deleted(tx, &target, &key).await?;
                }
                Effect::SetSuspended { site, suspended } => {
                    sites::set_suspended(tx, &site, suspended).await?;
                }
                Effect::RecordFilesUsage { site, usage } => {
                    sites::record_files_usage(tx, &site, usage.bytes, usage.complete).await?;
                }
                Effect::RecordDbUsage { site, bytes } => {
                    sites::record_db_usage(tx, &site, bytes).await?;
                }
                Effect::MarkBackupOnDisk { server, path } => {
                    sites::mark_backup_on_disk(tx, &server, &path).await?;
                }
                Effect::PlatformStatus { platform, status } => {
                    platforms::set_status(tx, &platform, status).await?;
                }
                Effect::SiteStatus { site, status } => {
                    sites::set_status(tx, &site, status).await?;
                }
                Effect::ClearAliases { site } => {
                    sites::set_aliases(tx, &site, &[]).await?;
                }
                Effect::MoveDatabase { site, db } => {
                    if let Some(sealed) = t::task_secret(tx, task.id, SECRET_SITE_DB_NEXT).await? {
                        sites::set_database(tx, &site, &db.name, &db.user, &sealed).await?;
                    }
                }
                Effect::SetHome {
                    site,
                    platform,
                    db_server,
                } => {
                    sites::set_home(tx, &site, &platform, &db_server).await?;
                }
                Effect::BackupVerified { backup } => {
                    sites::set_backup_verified(tx, backup, task.id).await?;
                }
                Effect::CronKeyGiven { site } => {
                    berth_store::cron::set_cron_key_given(tx, &site, true).await?;
                }
                Effect::RecordCron { site, ok } => {
                    berth_store::cron::record_last_cron(tx, &site, task.id, ok).await?;
                }
                Effect::Rename { from, to } => {
                    sites::rename(tx, &from, &to).await?;
                    // A login link made for the old name leads nowhere now.
                    sites::clear_login_link(tx, &to).await?;
                }
            }
        }
        Ok(())
    }
}

/// Writes `event` as a notice (to `berth.notices`, for webhooks) in the transaction that
/// makes it true: published after commit, never for a rolled-back change.
async fn notify(tx: &mut Tx, task: &TaskRow, event: NoticeEvent) -> Result<()> {
    let row = outbox::enqueue_notice(tx, event, &task.traceparent).await?;
    tx.written.push(row);
    Ok(())
}

fn describe(step: &StepRow) -> String {
    format!(
        "step {} ({} {} on {})",
        step.position, step.service, step.action, step.server
    )
}

/// Buffers a task log line; the transaction writes its lines in one statement at commit.
fn log(tx: &mut Tx, task: &TaskRow, step: Option<Uuid>, level: LogLevel, message: &str) {
    tx.logs.push(t::NewLog {
        task_id: task.id,
        step_id: step,
        level,
        message: message.to_string(),
        at: chrono::Utc::now(),
    });
}

fn append_worker_log(tx: &mut Tx, task: &TaskRow, step: &StepRow, lines: &[WorkerLog]) {
    tx.logs.extend(lines.iter().map(|l| t::NewLog {
        task_id: task.id,
        step_id: Some(step.id),
        level: l.level,
        message: l.message.clone(),
        at: l.at,
    }));
}
