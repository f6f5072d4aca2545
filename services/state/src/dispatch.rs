//! The dispatcher: Aegir's `hosting-dispatch`, driven by messages instead of a cron poll.
//!
//! Every handler runs in one PostgreSQL transaction that first takes the target's advisory
//! lock and then the task's row lock (always in that order), so that:
//! - one task at a time runs per target, and tasks on different targets run side by side;
//! - a redelivered message finds the state already moved and changes nothing;
//! - the next message (a step command, a `TaskQueued`) is written to the outbox in the same
//!   transaction as the state it follows from.

use berth_contracts::{
    AttemptRecord, DeadLetterMessage, ErrorKind, LogLevel, StepCommand, StepEvent, StepOutcome,
    StepPhase, StepStatus, StepStop, TargetKind, TaskQueued, TaskStatus, WorkerLog, exchanges,
};
use berth_hosting::sites::{
    plan_clone, plan_migrate, plan_platform_task, plan_site_task_with, status as site_status,
};
use berth_hosting::tasks::{SecretNeed, TaskType, plan_server_task};
use berth_store::outbox::{self, OutboxMessage, OutboxRow};
use berth_store::tasks::{self as t, NewStep, StepChange, StepRow, TaskRow};
use berth_store::{PgConnection, Store, dead, platforms, servers, sites};
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

const SECRET_DB_ADMIN: &str = "db_admin";
const SECRET_SITE_DB: &str = "site_db";
/// The password of the database a restore moves the site to, kept with the task; the
/// worker gets it as `site_db`, the password of the database it acts on.
const SECRET_SITE_DB_NEXT: &str = "site_db_next";

#[derive(Clone)]
pub struct Dispatcher {
    store: Store,
    /// Asked, when a running task is cancelled, whether anyone consumes its step's queue.
    broker: Option<berth_broker::Broker>,
}

/// What a cancel asked for while a task runs does now (see [`cancel_action`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelAction {
    /// A step is being taken back already: the task ends `cancelled` when that is done.
    Wait,
    /// Order the workers to stop this running step; its `Stopped` (or result) moves on.
    Stop(Uuid),
    /// Nobody consumes this running step's queue: no worker has it; give it up at once.
    Abandon(Uuid),
    /// No step is live: take back the done ones and end.
    Undo,
}

/// The decision on a cancel of a processing task, from its steps' statuses and the
/// consumers of the queue of its running step (`None`: the broker did not say).
pub fn cancel_action(steps: &[(Uuid, StepStatus)], consumers: Option<u32>) -> CancelAction {
    if steps.iter().any(|(_, s)| *s == StepStatus::Compensating) {
        return CancelAction::Wait;
    }
    match steps.iter().find(|(_, s)| *s == StepStatus::Running) {
        Some((id, _)) if consumers == Some(0) => CancelAction::Abandon(*id),
        Some((id, _)) => CancelAction::Stop(*id),
        None => CancelAction::Undo,
    }
}

/// How a task whose plan has been taken back ends: `cancelled` if that was asked for.
fn undone_status(task: &TaskRow) -> TaskStatus {
    if task.cancel_requested_at.is_some() {
        TaskStatus::Cancelled
    } else {
        TaskStatus::Error
    }
}

impl Dispatcher {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            broker: None,
        }
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
        let statuses: Vec<(Uuid, StepStatus)> = steps.iter().map(|s| (s.id, s.status())).collect();
        let running = steps
            .iter()
            .find(|s| s.status() == StepStatus::Running)
            .cloned();
        let consumers = match &running {
            Some(step) => self.consumers(step).await,
            None => None,
        };
        match cancel_action(&statuses, consumers) {
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
                self.compensate(tx, task, &steps).await
            }
            CancelAction::Undo => self.compensate(tx, task, &steps).await,
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

    /// `state.events`: a worker reports progress, a retry, or success of a step.
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
        match &ev.outcome {
            StepOutcome::Progress => {
                let live = matches!(
                    step.status(),
                    StepStatus::Running | StepStatus::Compensating
                );
                if live {
                    append_worker_log(&mut tx, &task, &step, &ev.log);
                }
            }
            StepOutcome::Retrying { error, retry_in_ms } => {
                let record = AttemptRecord {
                    attempt: ev.attempt,
                    at: ev.at,
                    error: error.clone(),
                    kind: ErrorKind::Transient,
                    retry_in_ms: Some(*retry_in_ms),
                    worker: ev.worker.clone(),
                };
                if t::record_attempt(&mut tx, step.id, &record).await? {
                    append_worker_log(&mut tx, &task, &step, &ev.log);
                    log(
                        &mut tx,
                        &task,
                        Some(step.id),
                        LogLevel::Warning,
                        &format!(
                            "{}: attempt {} failed: {error}; retrying in {retry_in_ms} ms",
                            describe(&step),
                            ev.attempt
                        ),
                    );
                }
            }
            StepOutcome::Stopped { started } => {
                // A step stopped midway may have done part of its work: its own
                // compensation (idempotent, as every step's) takes that back first.
                let undo_it = *started && step.compensation.is_some();
                let to = if undo_it {
                    StepStatus::Compensating
                } else {
                    StepStatus::Error
                };
                let why = if *started {
                    "stopped midway: its task was cancelled"
                } else {
                    "not started: its task was cancelled"
                };
                let moved = t::transition_step(
                    &mut tx,
                    step.id,
                    &[StepStatus::Running],
                    to,
                    StepChange {
                        attempt: Some(ev.attempt as i32),
                        error: Some(why),
                        started_at: Some(ev.started_at),
                        finished: !undo_it,
                    },
                )
                .await?;
                if moved && ev.phase == StepPhase::Run {
                    append_worker_log(&mut tx, &task, &step, &ev.log);
                    log(
                        &mut tx,
                        &task,
                        Some(step.id),
                        LogLevel::Warning,
                        &format!("{}: {why} ({})", describe(&step), ev.worker),
                    );
                    set_status(&mut steps, step.id, to);
                    if undo_it {
                        log(
                            &mut tx,
                            &task,
                            Some(step.id),
                            LogLevel::Warning,
                            &format!("taking back {}", describe(&step)),
                        );
                        self.send(&mut tx, &task, &step, StepPhase::Compensate)
                            .await?;
                    } else {
                        self.compensate(&mut tx, &task, &steps).await?;
                    }
                }
            }
            StepOutcome::Succeeded { warning, .. } => match ev.phase {
                StepPhase::Run => {
                    let to = if *warning {
                        StepStatus::Warning
                    } else {
                        StepStatus::Success
                    };
                    let moved = t::transition_step(
                        &mut tx,
                        step.id,
                        &[StepStatus::Running],
                        to,
                        StepChange {
                            attempt: Some(ev.attempt as i32),
                            started_at: Some(ev.started_at),
                            finished: true,
                            ..Default::default()
                        },
                    )
                    .await?;
                    if !moved {
                        tracing::debug!(step_id = %step.id, "result already recorded; redelivery ignored");
                    } else {
                        if let StepOutcome::Succeeded { output, .. } = &ev.outcome {
                            record_output(&mut tx, &task, &step, output).await?;
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
                        if task.status() == TaskStatus::Processing {
                            set_status(&mut steps, step.id, to);
                            if task.cancel_requested_at.is_some() {
                                // Ended before its stop order reached it: take back instead.
                                self.compensate(&mut tx, &task, &steps).await?;
                            } else {
                                self.advance(&mut tx, &task, &steps).await?;
                            }
                        }
                    }
                }
                StepPhase::Compensate => {
                    let moved = t::transition_step(
                        &mut tx,
                        step.id,
                        &[StepStatus::Compensating],
                        StepStatus::Compensated,
                        StepChange {
                            finished: true,
                            ..Default::default()
                        },
                    )
                    .await?;
                    if moved {
                        append_worker_log(&mut tx, &task, &step, &ev.log);
                        log(
                            &mut tx,
                            &task,
                            Some(step.id),
                            LogLevel::Info,
                            &format!("{}: taken back", describe(&step)),
                        );
                        set_status(&mut steps, step.id, StepStatus::Compensated);
                        self.compensate(&mut tx, &task, &steps).await?;
                    }
                }
            },
        }
        tx.commit().await
    }

    /// A message about this task cannot be recorded (it fails again and again): the task
    /// ends in error with the reason in its log, and the next task of its target starts.
    /// Its steps stay as they are, so an operator sees where it stood.
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
            // A step whose result could not be recorded is not left `running` in a task
            // that has ended: it ends with the task, saying why.
            for step in t::steps_of(&mut tx, task.id).await? {
                t::transition_step(
                    &mut tx,
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
            log(&mut tx, &task, None, LogLevel::Error, reason);
            self.finish(&mut tx, &task, TaskStatus::Error).await?;
        }
        tx.commit().await
    }

    /// `state.dead`: a step failed for good (permanent error, attempts exhausted, or a
    /// worker crash loop caught by the queue's delivery limit).
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
            o.remove("sealed");
            o.remove("secrets");
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
        let from = match cmd.phase {
            StepPhase::Run => StepStatus::Running,
            StepPhase::Compensate => StepStatus::Compensating,
        };
        let moved = t::transition_step(
            &mut tx,
            step.id,
            &[from],
            StepStatus::Error,
            StepChange {
                attempt: msg.history.iter().map(|h| h.attempt as i32).max(),
                error: Some(&msg.error),
                started_at: msg.history.first().map(|h| h.at),
                finished: true,
            },
        )
        .await?;
        if recorded && moved {
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
            set_status(&mut steps, step.id, StepStatus::Error);
            self.compensate(&mut tx, &task, &steps).await?;
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
        self.advance(tx, &task, &steps).await
    }

    /// Builds and stores the task's plan (its steps, in order); `Err` is a reason the task
    /// cannot run.
    async fn plan(
        &self,
        tx: &mut Tx,
        task: &TaskRow,
    ) -> Result<std::result::Result<Vec<StepRow>, String>> {
        let task_type = match TaskType::parse(&task.task_type) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let plan = match TargetKind::parse(&task.target_kind) {
            Some(TargetKind::Server) => {
                let Some(server) = servers::get_server(tx, &task.target).await? else {
                    return Ok(Err(format!("server `{}` no longer exists", task.target)));
                };
                plan_server_task(task_type, &task.args, &server.facts())
            }
            Some(TargetKind::Platform) => {
                let Some(p) = platforms::facts(tx, &task.target).await? else {
                    return Ok(Err(format!("platform `{}` does not exist", task.target)));
                };
                match plan_platform_task(task_type, &p) {
                    Ok(plan) => plan,
                    Err(why) => return Ok(Err(why)),
                }
            }
            Some(TargetKind::Site) => {
                let Some(site) = sites::facts(tx, &task.target).await? else {
                    return Ok(Err(format!("site `{}` does not exist", task.target)));
                };
                let planned = if task_type == TaskType::Clone {
                    let new_uri = task.args["new_site"].as_str().unwrap_or_default();
                    match sites::facts(tx, new_uri).await? {
                        Some(n) => plan_clone(&site, &n, &task.args),
                        None => Err(format!("the clone's new site `{new_uri}` does not exist")),
                    }
                } else if task_type == TaskType::Migrate {
                    let to = &task.args["to"];
                    let platform = to["platform"].as_str().unwrap_or(&site.platform.name);
                    let db_server = to["db_server"].as_str().unwrap_or(&site.db_server.name);
                    let Some(p) = platforms::facts(tx, platform).await? else {
                        return Ok(Err(format!("platform `{platform}` does not exist")));
                    };
                    let Some(db) = servers::get_server(tx, db_server).await? else {
                        return Ok(Err(format!("server `{db_server}` does not exist")));
                    };
                    plan_migrate(&site, &p, &db.facts(), &task.args)
                } else {
                    plan_site_task_with(task_type, &site, &task.args)
                };
                match planned {
                    Ok(plan) => plan,
                    Err(why) => return Ok(Err(why)),
                }
            }
            None => return Ok(Err(format!("unknown target kind `{}`", task.target_kind))),
        };
        let new: Vec<NewStep> = plan
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| NewStep {
                id: Uuid::now_v7(),
                position: i as i32 + 1,
                service: s.service,
                server: &s.server,
                action: &s.action,
                args: &s.args,
                compensation: s.compensation.as_deref(),
                secret: s.secret.map(|n| match n {
                    SecretNeed::DbAdmin => SECRET_DB_ADMIN,
                    SecretNeed::SiteDb => SECRET_SITE_DB,
                    SecretNeed::DbAdminAndSiteDb => "db_admin,site_db",
                    SecretNeed::SiteDbNext => SECRET_SITE_DB_NEXT,
                    SecretNeed::DbAdminAndSiteDbNext => "db_admin,site_db_next",
                }),
            })
            .collect();
        if new.is_empty() {
            return Ok(Ok(Vec::new()));
        }
        Ok(Ok(t::insert_steps(tx, task.id, &new).await?))
    }

    /// Sends the first step not yet done, or ends the task when all are done.
    async fn advance(&self, tx: &mut Tx, task: &TaskRow, steps: &[StepRow]) -> Result<()> {
        let next = steps
            .iter()
            .find(|s| !matches!(s.status(), StepStatus::Success | StepStatus::Warning));
        match next {
            None => {
                let warned = steps.iter().any(|s| s.status() == StepStatus::Warning);
                let status = if warned {
                    TaskStatus::Warning
                } else {
                    TaskStatus::Success
                };
                self.finish(tx, task, status).await
            }
            Some(step) if step.status() == StepStatus::Pending => {
                t::transition_step(
                    tx,
                    step.id,
                    &[StepStatus::Pending],
                    StepStatus::Running,
                    StepChange::default(),
                )
                .await?;
                self.send(tx, task, step, StepPhase::Run).await
            }
            Some(_) => Ok(()),
        }
    }

    /// Takes back, newest first, the steps that succeeded before a failure (or a cancel);
    /// then ends the task in error (or `cancelled`).
    async fn compensate(&self, tx: &mut Tx, task: &TaskRow, steps: &[StepRow]) -> Result<()> {
        if steps.iter().any(|s| s.status() == StepStatus::Compensating) {
            return Ok(());
        }
        let undo = steps.iter().rev().find(|s| {
            matches!(s.status(), StepStatus::Success | StepStatus::Warning)
                && s.compensation.is_some()
        });
        match undo {
            Some(step) => {
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
                self.send(tx, task, step, StepPhase::Compensate).await
            }
            None => self.finish(tx, task, undone_status(task)).await,
        }
    }

    async fn send(
        &self,
        tx: &mut Tx,
        task: &TaskRow,
        step: &StepRow,
        phase: StepPhase,
    ) -> Result<()> {
        let needs: Vec<&str> = step
            .secret
            .as_deref()
            .map(|s| s.split(',').collect())
            .unwrap_or_default();
        let sealed = if needs.contains(&SECRET_DB_ADMIN) {
            servers::get_server(tx, &step.server)
                .await?
                .and_then(|s| s.db_admin_password_sealed)
        } else {
            None
        };
        let mut secrets = std::collections::BTreeMap::new();
        if needs.contains(&SECRET_SITE_DB)
            && let Some(p) = sites::db_password_sealed(tx, &task.target).await?
        {
            secrets.insert(SECRET_SITE_DB.to_string(), p);
        }
        if needs.contains(&SECRET_SITE_DB_NEXT)
            && let Some(p) = t::task_secret(tx, task.id, SECRET_SITE_DB_NEXT).await?
        {
            secrets.insert(SECRET_SITE_DB.to_string(), p);
        }
        let action = match phase {
            StepPhase::Run => step.action.clone(),
            StepPhase::Compensate => step.compensation.clone().unwrap_or_default(),
        };
        let cmd = StepCommand {
            task_id: task.id,
            step_id: step.id,
            task_type: task.task_type.clone(),
            target: task.target.clone(),
            service: step.service.clone(),
            server: step.server.clone(),
            action,
            phase,
            args: step.args.clone(),
            sealed,
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
        if let Some(note) = apply_finish(tx, task, status).await? {
            log(tx, task, None, LogLevel::Info, &note);
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
}

/// Records what a step found (package registries, login links) with its result.
async fn record_output(
    tx: &mut Tx,
    task: &TaskRow,
    step: &StepRow,
    output: &serde_json::Value,
) -> Result<()> {
    let packages = |v: &serde_json::Value| -> Vec<berth_contracts::Package> {
        v.get("packages")
            .and_then(|p| serde_json::from_value(p.clone()).ok())
            .unwrap_or_default()
    };
    match step.action.as_str() {
        "platform-verify" => {
            let found: Vec<String> = output
                .get("sites")
                .and_then(|p| serde_json::from_value(p.clone()).ok())
                .unwrap_or_default();
            platforms::record_scan(
                tx,
                &task.target,
                output
                    .get("drupal_major")
                    .and_then(|v| v.as_i64())
                    .map(|v| v as i32),
                output.get("core_version").and_then(|v| v.as_str()),
                &packages(output),
                &found,
            )
            .await?;
        }
        // A delete run again after its files went made no backup: nothing to record.
        "site-backup" if output.get("skipped").is_some() => {}
        "site-backup" => {
            let backup = step.args.get("backup").cloned().unwrap_or_default();
            let text = |v: &serde_json::Value, k: &str| {
                v.get(k)
                    .and_then(|x| x.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            sites::record_backup(
                tx,
                sites::NewBackup {
                    id: step.id,
                    site: &task.target,
                    server: &step.server,
                    file: &text(output, "file"),
                    path: &text(output, "path"),
                    size: output.get("size").and_then(|v| v.as_i64()).unwrap_or(0),
                    sha256: &text(output, "sha256"),
                    compression: &text(output, "compression"),
                    description: &text(&backup, "description"),
                    task_id: task.id,
                },
            )
            .await?;
        }
        "site-packages" | "site-login" => {
            // The site the step acted on: the task's (a renamed site keeps its row's old
            // name until the task ends), or a clone's new site.
            let uri = match task.task_type.as_str() {
                "clone" => step.args["uri"].as_str().unwrap_or(&task.target),
                _ => &task.target,
            };
            if output.get("packages").is_some() {
                sites::record_packages(tx, uri, &packages(output)).await?;
            }
            if let Some(link) = output.get("login_link").and_then(|v| v.as_str()) {
                sites::set_login_link(tx, uri, link).await?;
            }
        }
        "backup-delete" => {
            if let Some(path) = step.args["path"].as_str() {
                sites::mark_backup_deleted(tx, &step.server, path).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// What a finished task changes in the state of its platform or site; a line for the log.
async fn apply_finish(tx: &mut Tx, task: &TaskRow, status: TaskStatus) -> Result<Option<String>> {
    let ok = matches!(status, TaskStatus::Success | TaskStatus::Warning);
    match TargetKind::parse(&task.target_kind) {
        Some(TargetKind::Platform) if task.task_type == "verify" => {
            let to = if ok { "verified" } else { "failed" };
            platforms::set_status(tx, &task.target, to).await?;
            Ok(Some(format!("platform {}: {to}", task.target)))
        }
        Some(TargetKind::Site) if task.task_type == "clone" => {
            // A clone ends its new site's install: enabled, or failed (nothing left of it).
            let new_uri = task.args["new_site"].as_str().unwrap_or_default();
            let to = if ok {
                site_status::ENABLED
            } else {
                site_status::FAILED
            };
            sites::set_status(tx, new_uri, to).await?;
            Ok(Some(format!("site {new_uri} (the clone): {to}")))
        }
        Some(TargetKind::Site) => {
            let Some(site) = sites::get_site(tx, &task.target).await? else {
                return Ok(None);
            };
            let to = match (task.task_type.as_str(), ok) {
                ("install", true) => site_status::ENABLED,
                // Only an install that ran fails the site: one refused at planning (the site
                // was already installed, say) leaves it as it was.
                ("install", false) if site.status == site_status::INSTALLING => site_status::FAILED,
                ("disable", true) => site_status::DISABLED,
                ("delete", true) => {
                    // The row and its history stay; its aliases are free for other sites.
                    sites::set_aliases(tx, &task.target, &[]).await?;
                    site_status::DELETED
                }
                ("enable", true) => site_status::ENABLED,
                ("migrate", true) => {
                    let next = &task.args["next_db"];
                    let to = &task.args["to"];
                    if let (Some(name), Some(user), Some(sealed)) = (
                        next["name"].as_str(),
                        next["user"].as_str(),
                        t::task_secret(tx, task.id, SECRET_SITE_DB_NEXT).await?,
                    ) {
                        sites::set_database(tx, &task.target, name, user, &sealed).await?;
                    }
                    sites::set_home(
                        tx,
                        &task.target,
                        to["platform"].as_str().unwrap_or(&site.platform),
                        to["db_server"].as_str().unwrap_or(&site.db_server),
                    )
                    .await?;
                    let new_uri = to["uri"].as_str().filter(|u| *u != task.target);
                    if let Some(u) = new_uri {
                        sites::rename(tx, &task.target, u).await?;
                        // A login link made for the old name leads nowhere now.
                        sites::clear_login_link(tx, u).await?;
                    }
                    return Ok(Some(format!(
                        "site {}: now {}on {} with database {} on {}",
                        task.target,
                        new_uri.map(|u| format!("{u}, ")).unwrap_or_default(),
                        to["platform"].as_str().unwrap_or(&site.platform),
                        next["name"].as_str().unwrap_or("?"),
                        to["db_server"].as_str().unwrap_or(&site.db_server),
                    )));
                }
                ("restore", true) => {
                    let next = &task.args["next_db"];
                    if let (Some(name), Some(user), Some(sealed)) = (
                        next["name"].as_str(),
                        next["user"].as_str(),
                        t::task_secret(tx, task.id, SECRET_SITE_DB_NEXT).await?,
                    ) {
                        sites::set_database(tx, &task.target, name, user, &sealed).await?;
                    }
                    return Ok(Some(format!(
                        "site {}: restored; it now uses database {}",
                        task.target,
                        next["name"].as_str().unwrap_or("?")
                    )));
                }
                _ => return Ok(None),
            };
            sites::set_status(tx, &task.target, to).await?;
            Ok(Some(format!("site {}: {to}", task.target)))
        }
        _ => Ok(None),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(statuses: &[StepStatus]) -> Vec<(Uuid, StepStatus)> {
        statuses.iter().map(|s| (Uuid::now_v7(), *s)).collect()
    }

    #[test]
    fn a_cancel_stops_the_running_step_when_a_worker_may_have_it() {
        use StepStatus::*;
        let steps = plan(&[Success, Running, Pending]);
        let running = steps[1].0;
        assert_eq!(cancel_action(&steps, Some(1)), CancelAction::Stop(running));
        // The broker did not say: a worker may have it, so it is asked to stop.
        assert_eq!(cancel_action(&steps, None), CancelAction::Stop(running));
    }

    #[test]
    fn a_cancel_gives_up_a_step_nobody_consumes() {
        use StepStatus::*;
        let steps = plan(&[Success, Running, Pending]);
        assert_eq!(
            cancel_action(&steps, Some(0)),
            CancelAction::Abandon(steps[1].0)
        );
    }

    #[test]
    fn a_cancel_during_a_taking_back_waits_for_it_and_one_with_nothing_live_undoes() {
        use StepStatus::*;
        assert_eq!(
            cancel_action(&plan(&[Compensating, Error, Pending]), Some(0)),
            CancelAction::Wait
        );
        assert_eq!(
            cancel_action(&plan(&[Success, Pending]), Some(1)),
            CancelAction::Undo
        );
    }
}
