use std::sync::Mutex;

use berth_contracts::{LogLevel, StepCommand, StepOutcome, StepPhase, WorkerLog};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::step_event;
use crate::error::BrokerError;
use crate::headers::MessageHeaders;
use crate::publisher::Publisher;
use crate::topology;

/// What a step handler knows about its attempt, and where its task log lines go.
///
/// Lines logged with [`info`](Self::info), [`warn`](Self::warn) and
/// [`error`](Self::error) are buffered and sent with the step's result;
/// [`progress`](Self::progress) sends them (and its own line) at once, for long steps.
pub struct StepContext {
    task_id: Uuid,
    target: String,
    step_id: Uuid,
    phase: StepPhase,
    attempt: u32,
    max_attempts: u32,
    worker: String,
    diagnostics: bool,
    started_at: DateTime<Utc>,
    /// The step span's trace context, for the messages this step publishes.
    traceparent: Option<String>,
    log: Mutex<Vec<WorkerLog>>,
    publisher: Publisher,
}

impl StepContext {
    /// Must be created inside the step's span: it takes the span's trace context.
    pub(super) fn new(
        cmd: &StepCommand,
        attempt: u32,
        max_attempts: u32,
        worker: &str,
        diagnostics: bool,
        publisher: Publisher,
    ) -> Self {
        let tp = berth_telemetry::current_traceparent();
        Self {
            task_id: cmd.task_id,
            target: cmd.target.clone(),
            step_id: cmd.step_id,
            phase: cmd.phase,
            attempt,
            max_attempts,
            worker: worker.to_owned(),
            diagnostics,
            started_at: Utc::now(),
            traceparent: (!tp.is_empty()).then_some(tp),
            log: Mutex::new(Vec::new()),
            publisher,
        }
    }

    /// The context name the step's task runs on.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// 1 on the first attempt.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether a transient failure now would be the last (dead-lettered, not retried).
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    pub fn task_id(&self) -> Uuid {
        self.task_id
    }

    pub fn step_id(&self) -> Uuid {
        self.step_id
    }

    pub fn phase(&self) -> StepPhase {
        self.phase
    }

    /// This worker's name, as recorded in events.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// Whether diagnostic behaviour (injected failures, sleeps) is allowed.
    pub fn diagnostics(&self) -> bool {
        self.diagnostics
    }

    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    pub(super) fn traceparent(&self) -> Option<&str> {
        self.traceparent.as_deref()
    }

    /// Adds an info line to the task log (sent with the result). Never pass secrets.
    pub fn info(&self, msg: impl Into<String>) {
        self.push(LogLevel::Info, msg.into());
    }

    /// Adds a warning line to the task log (sent with the result).
    pub fn warn(&self, msg: impl Into<String>) {
        self.push(LogLevel::Warning, msg.into());
    }

    /// Adds an error line to the task log (sent with the result).
    pub fn error(&self, msg: impl Into<String>) {
        self.push(LogLevel::Error, msg.into());
    }

    /// Adds an info line and publishes every line buffered so far right away, as a
    /// `Progress` event. Best effort: if the publish fails the lines stay buffered and go
    /// with the result instead.
    pub async fn progress(&self, msg: impl Into<String>) {
        self.info(msg);
        let event = step_event(self, StepOutcome::Progress);
        if let Err(err) = self.send_event(&event).await {
            tracing::warn!(%err, "cannot publish step progress; keeping the lines for the result");
            let mut log = self.lock_log();
            let later = std::mem::take(&mut *log);
            *log = event.log;
            log.extend(later);
        }
    }

    /// Takes the lines buffered so far.
    pub(super) fn take_log(&self) -> Vec<WorkerLog> {
        std::mem::take(&mut *self.lock_log())
    }

    /// Publishes a step event with the buffered lines; they are gone from the buffer
    /// whether or not the publish worked (a failure redelivers the step, which logs anew).
    pub(super) async fn publish_event(&self, outcome: StepOutcome) -> Result<(), BrokerError> {
        let event = step_event(self, outcome);
        self.send_event(&event).await
    }

    async fn send_event(&self, event: &berth_contracts::StepEvent) -> Result<(), BrokerError> {
        let headers = MessageHeaders {
            traceparent: self.traceparent.clone(),
            task_id: Some(self.task_id.to_string()),
            attempt: self.attempt,
            ..MessageHeaders::default()
        };
        self.publisher
            .publish_json(
                topology::EVENTS_EXCHANGE,
                topology::EVENTS_ROUTING_KEY,
                &self.step_id.to_string(),
                event,
                headers,
            )
            .await
    }

    fn push(&self, level: LogLevel, message: String) {
        match level {
            LogLevel::Info => tracing::info!("{message}"),
            LogLevel::Warning => tracing::warn!("{message}"),
            LogLevel::Error => tracing::error!("{message}"),
        }
        self.lock_log().push(WorkerLog {
            at: Utc::now(),
            level,
            message,
        });
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, Vec<WorkerLog>> {
        // A panic elsewhere while holding the lock leaves a usable Vec.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for StepContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext")
            .field("task_id", &self.task_id)
            .field("step_id", &self.step_id)
            .field("attempt", &self.attempt)
            .field("worker", &self.worker)
            .finish()
    }
}
