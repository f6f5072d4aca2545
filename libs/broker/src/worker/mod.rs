//! The worker framework: consume `work.<service>.<server>`, run each step through a
//! [`StepHandler`], report the outcome, retry with backoff or dead-letter.
//!
//! Every outcome is published (and confirmed) before the step's message is acked, so a
//! worker dying at any point leads to a redelivery, never to a lost step; handlers must
//! therefore be idempotent.

mod context;
mod control;
mod noop;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_contracts::{
    AttemptRecord, DeadLetterMessage, ErrorKind, StepCommand, StepEvent, StepOutcome, StepOutput,
    StepPhase, Work,
};
use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::backoff::jitter_ms;
use crate::connection::Broker;
use crate::consumer::{ConsumeOptions, Delivery, HandlerError, consume_with};
use crate::error::{BrokerError, short};
use crate::headers::MessageHeaders;
use crate::publisher::Publisher;
use crate::topology::{self, Topology};

pub use context::StepContext;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerConfig {
    pub amqp_url: String,
    /// `http`, `db`, `dns` or `backup`.
    pub service: String,
    /// Context names of the servers this worker acts for, e.g. `server_master`.
    pub servers: Vec<String>,
    /// Steps run at once; also the prefetch of each work queue.
    pub concurrency: u16,
    /// Backoff before the 2nd, 3rd, … attempt of a step failing transiently; a step gets
    /// `1 + len` attempts in all.
    pub retry_delays_ms: Vec<u64>,
    /// Who ran a step, as recorded in events and attempt history: `http@host#pid`.
    pub worker_name: String,
    /// Honour the `noop` step's `sleep_ms` and `fail` arguments (off in production).
    pub diagnostics: bool,
    /// A step still running after this long is ended (its future dropped, its child
    /// processes killed) and fails permanently. It must stay below the broker's consumer
    /// timeout (RabbitMQ: 30 min by default), which would otherwise close the channel and
    /// hand the step, still running here, to another worker.
    pub step_timeout: Duration,
    /// How long steps may wait for a worker (the work queues this worker declares).
    pub limits: crate::topology::Limits,
}

/// The default [`WorkerConfig::step_timeout`]: 25 minutes, under RabbitMQ's default
/// `consumer_timeout` of 30.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(25 * 60);

impl WorkerConfig {
    /// A configuration with the default retry tiers, concurrency 4, diagnostics off and
    /// the name `<service>@<hostname>#<pid>`.
    pub fn new(
        amqp_url: impl Into<String>,
        service: impl Into<String>,
        servers: Vec<String>,
    ) -> Self {
        let service = service.into();
        Self {
            amqp_url: amqp_url.into(),
            worker_name: default_worker_name(&service),
            service,
            servers,
            limits: crate::topology::Limits::default(),
            concurrency: 4,
            retry_delays_ms: topology::DEFAULT_RETRY_DELAYS_MS.to_vec(),
            diagnostics: false,
            step_timeout: DEFAULT_STEP_TIMEOUT,
        }
    }

    fn validate(&self) -> Result<(), BrokerError> {
        let bad = |m: &str| Err(BrokerError::Config(m.to_owned()));
        if self.service.is_empty() {
            return bad("the worker needs a service");
        }
        if self.servers.is_empty() {
            return bad("the worker needs at least one server");
        }
        if self.concurrency == 0 {
            return bad("worker concurrency must be at least 1");
        }
        if self.retry_delays_ms.contains(&0) {
            return bad("retry delays must be at least 1 ms");
        }
        if self.step_timeout.is_zero() {
            return bad("the step timeout must be above zero");
        }
        for server in &self.servers {
            short(&topology::work_queue(&self.service, server))?;
        }
        Ok(())
    }

    /// Attempts a step gets before it is dead-lettered.
    pub fn max_attempts(&self) -> u32 {
        1 + self.retry_delays_ms.len() as u32
    }
}

/// `<service>@<hostname>#<pid>`.
pub fn default_worker_name(service: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{service}@{host}#{}", std::process::id())
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Worth another try later: retried with backoff while attempts remain.
    #[error("{0}")]
    Transient(String),
    /// Will fail again: dead-lettered at once.
    #[error("{0}")]
    Permanent(String),
}

impl StepError {
    pub fn transient(msg: impl std::fmt::Display) -> Self {
        Self::Transient(msg.to_string())
    }

    pub fn permanent(msg: impl std::fmt::Display) -> Self {
        Self::Permanent(msg.to_string())
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Transient(_) => ErrorKind::Transient,
            Self::Permanent(_) => ErrorKind::Permanent,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::Transient(m) | Self::Permanent(m) => m,
        }
    }
}

/// A step done: its output for the state service, and whether it ended with a warning.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOk {
    pub output: StepOutput,
    pub warning: bool,
}

impl StepOk {
    pub fn new(output: StepOutput) -> Self {
        Self {
            output,
            warning: false,
        }
    }

    pub fn with_warning(mut self) -> Self {
        self.warning = true;
        self
    }
}

/// What a service does with a step. `noop` steps never reach it: the framework answers
/// them itself.
pub trait StepHandler: Send + Sync + 'static {
    fn handle(
        &self,
        cmd: &StepCommand,
        ctx: &StepContext,
    ) -> impl Future<Output = Result<StepOk, StepError>> + Send;
}

struct Worker<H> {
    cfg: WorkerConfig,
    handler: Arc<H>,
    publisher: Publisher,
    stops: Arc<control::Stops>,
}

/// Runs a worker until `shutdown` fires, then lets steps in flight finish, acks them and
/// closes the connection.
///
/// Declares the core topology, the retry tiers of `cfg.retry_delays_ms` and a work queue
/// per server, and consumes those queues with `cfg.concurrency` steps at a time. A lost
/// connection is re-established and consumption resumes. Returns an error for an invalid
/// configuration or a topology the broker refuses.
pub async fn run_worker<H: StepHandler>(
    cfg: WorkerConfig,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<(), BrokerError> {
    cfg.validate()?;
    let broker = match Broker::connect(&cfg.amqp_url, &shutdown).await {
        Ok(b) => b.with_limits(cfg.limits),
        Err(BrokerError::Cancelled) => return Ok(()),
        Err(err) => return Err(err),
    };
    let mut topology = Topology::core().with_retry_tiers(&cfg.retry_delays_ms);
    for server in &cfg.servers {
        topology = topology.with_work_queue(&cfg.service, server);
    }
    let queues = cfg
        .servers
        .iter()
        .map(|server| topology::work_queue(&cfg.service, server))
        .collect();
    let opts = ConsumeOptions::new(queues, cfg.concurrency, topology);
    tracing::info!(worker = %cfg.worker_name, service = %cfg.service, servers = ?cfg.servers,
        concurrency = cfg.concurrency, retry_delays_ms = ?cfg.retry_delays_ms,
        diagnostics = cfg.diagnostics, "worker starting");

    let stops = Arc::new(control::Stops::default());
    // Its own token: it stops with the worker, also when consuming ends in an error.
    let control_stop = shutdown.child_token();
    let control = tokio::spawn(control::listen(
        broker.clone(),
        Arc::clone(&stops),
        control_stop.clone(),
    ));
    let worker = Arc::new(Worker {
        publisher: Publisher::new(broker.clone()),
        cfg,
        handler,
        stops,
    });
    let w = Arc::clone(&worker);
    let result = consume_with(&broker, opts, shutdown, move |delivery| {
        let w = Arc::clone(&w);
        async move { w.process(delivery).await }
    })
    .await;
    control_stop.cancel();
    let _ = control.await;
    broker.close().await;
    tracing::info!(worker = %worker.cfg.worker_name, "worker stopped");
    result
}

impl<H: StepHandler> Worker<H> {
    async fn process(&self, delivery: Delivery) -> Result<(), HandlerError> {
        if delivery.headers.version != berth_contracts::MESSAGE_VERSION {
            // Dead-lettered: the state service fails its task, saying to retry it.
            return Err(HandlerError::Reject(format!(
                "step command of message version {}; this worker reads version {}",
                delivery.headers.version,
                berth_contracts::MESSAGE_VERSION
            )));
        }
        let cmd: StepCommand = match serde_json::from_slice(&delivery.body) {
            Ok(cmd) => cmd,
            Err(err) => {
                // Without a command there is nothing to report to; the queue's
                // dead-letter exchange takes it to berth.dead with x-death headers (the
                // consume loop logs the rejection).
                return Err(HandlerError::Reject(format!(
                    "malformed step command: {err}"
                )));
            }
        };
        let attempt = delivery.headers.attempt;
        let span = tracing::info_span!("step",
            "otel.kind" = "consumer",
            task_id = %cmd.task_id,
            step_id = %cmd.step_id,
            action = %cmd.action(),
            attempt,
            service = %cmd.service(),
            server = %cmd.server,
            trace_id = tracing::field::Empty,
        );
        if let Some(tp) = &delivery.headers.traceparent {
            berth_telemetry::set_parent_from_traceparent(&span, tp);
        }
        // On every log line of the step, so logs can be found from a task's trace id.
        if let Some(trace_id) =
            berth_telemetry::trace_id_of(&berth_telemetry::traceparent_of(&span))
        {
            span.record("trace_id", trace_id);
        }
        self.run_step(cmd, delivery).instrument(span).await
    }

    async fn run_step(&self, cmd: StepCommand, delivery: Delivery) -> Result<(), HandlerError> {
        let attempt = delivery.headers.attempt;
        let ctx = StepContext::new(
            &cmd,
            attempt,
            self.cfg.max_attempts(),
            &self.cfg.worker_name,
            self.cfg.diagnostics,
            self.publisher.clone(),
        );
        // A step of a task being cancelled: not started when its stop order came first,
        // else stopped when it comes (compensations are never stopped).
        let stop = match cmd.phase {
            StepPhase::Run => match self.stops.start(cmd.step_id) {
                Some(token) => Some(token),
                None => {
                    tracing::warn!("step not started: its task is being cancelled");
                    return self.stopped(&ctx, false).await;
                }
            },
            StepPhase::Compensate => None,
        };
        tracing::info!(redelivered = delivery.redelivered, "step started");
        let run = async {
            if let Work::Noop(spec) = &cmd.work {
                noop::run(spec, &ctx).await
            } else {
                self.handler.handle(&cmd, &ctx).await
            }
        };
        let stoppable = async {
            match &stop {
                Some(token) => tokio::select! {
                    r = run => Some(r),
                    _ = token.cancelled() => None,
                },
                None => Some(run.await),
            }
        };
        // Ends the step, not the worker: the handler's future is dropped (child processes
        // are spawned kill_on_drop) and the step fails like any other.
        let timed = tokio::time::timeout(self.cfg.step_timeout, stoppable).await;
        self.stops.finished(cmd.step_id);
        let result = match timed {
            Ok(Some(result)) => result,
            Ok(None) => {
                ctx.warn("step stopped: its task is being cancelled");
                return self.stopped(&ctx, true).await;
            }
            Err(_) => {
                tracing::warn!(
                    timeout_s = self.cfg.step_timeout.as_secs_f64(),
                    "step timed out"
                );
                Err(StepError::permanent(format!(
                    "the step did not finish within {} s and was ended (BERTH_STEP_TIMEOUT_S)",
                    self.cfg.step_timeout.as_secs_f64()
                )))
            }
        };
        let reported = match result {
            Ok(ok) => self.succeeded(&ctx, ok).await,
            Err(err) => self.failed(cmd, &ctx, &delivery, err).await,
        };
        reported.map_err(|err| {
            tracing::warn!(%err, "cannot publish the step outcome; the step will be redelivered");
            HandlerError::Retry(format!("cannot publish the step outcome: {err}"))
        })
    }

    /// Reports a step stopped (or not started) for its task's cancel; acks it.
    async fn stopped(&self, ctx: &StepContext, started: bool) -> Result<(), HandlerError> {
        ctx.publish_event(StepOutcome::Stopped { started })
            .await
            .map_err(|err| {
                tracing::warn!(%err, "cannot publish the step outcome; the step will be redelivered");
                HandlerError::Retry(format!("cannot publish the step outcome: {err}"))
            })?;
        tracing::info!(outcome = "stopped", started, "step finished");
        Ok(())
    }

    async fn succeeded(&self, ctx: &StepContext, ok: StepOk) -> Result<(), BrokerError> {
        let warning = ok.warning;
        ctx.publish_event(StepOutcome::Succeeded {
            output: ok.output,
            warning,
        })
        .await?;
        // task_id, step_id, action and attempt are fields of the enclosing `step` span.
        tracing::info!(outcome = "succeeded", warning, "step finished");
        Ok(())
    }

    async fn failed(
        &self,
        cmd: StepCommand,
        ctx: &StepContext,
        delivery: &Delivery,
        err: StepError,
    ) -> Result<(), BrokerError> {
        let attempt = ctx.attempt();
        // Tier for the next attempt: the delay after attempt n is retry_delays[n-1].
        let tier = match err.kind() {
            ErrorKind::Transient => self.cfg.retry_delays_ms.get(attempt as usize - 1).copied(),
            ErrorKind::Permanent => None,
        };
        let retry_in_ms = tier.map(jitter_ms);
        let mut history = delivery.headers.history.clone();
        history.push(AttemptRecord {
            attempt,
            at: Utc::now(),
            error: err.message().to_owned(),
            kind: err.kind(),
            retry_in_ms,
            worker: self.cfg.worker_name.clone(),
        });
        // The routing key the step came with; it decides which queue the retry returns to.
        let routing_key = if delivery.exchange == topology::WORK_EXCHANGE {
            delivery.routing_key.clone()
        } else {
            cmd.routing_key()
        };
        let step_id = cmd.step_id.to_string();

        if let (Some(delay), Some(retry_in_ms)) = (tier, retry_in_ms) {
            ctx.publish_event(StepOutcome::Retrying {
                error: err.message().to_owned(),
                retry_in_ms,
            })
            .await?;
            let headers = MessageHeaders {
                traceparent: delivery.headers.traceparent.clone(),
                task_id: Some(cmd.task_id.to_string()),
                attempt: attempt + 1,
                history,
                ..MessageHeaders::default()
            };
            self.publisher
                .publish_expiring(
                    &topology::retry_tier(delay),
                    &routing_key,
                    &step_id,
                    &delivery.body,
                    headers,
                    Duration::from_millis(retry_in_ms),
                )
                .await?;
            tracing::warn!(outcome = "retrying", error = %err, retry_in_ms, "step failed; retrying");
            return Ok(());
        }

        let task_id = cmd.task_id;
        let dead = DeadLetterMessage {
            command: cmd,
            routing_key: routing_key.clone(),
            error: err.message().to_owned(),
            history,
            log: ctx.take_log(),
        };
        let headers = MessageHeaders {
            traceparent: ctx.traceparent().map(str::to_owned),
            task_id: Some(task_id.to_string()),
            attempt,
            ..MessageHeaders::default()
        };
        self.publisher
            .publish_json(
                topology::DEAD_EXCHANGE,
                &routing_key,
                &step_id,
                &dead,
                headers,
            )
            .await?;
        tracing::error!(outcome = "dead", kind = ?err.kind(), error = %err, "step failed; dead-lettered");
        Ok(())
    }
}

/// Everything that was published to `state.events` about a step is a [`StepEvent`]; this
/// builds one from the context.
fn step_event(ctx: &StepContext, outcome: StepOutcome) -> StepEvent {
    StepEvent {
        task_id: ctx.task_id(),
        target: Some(ctx.target().to_owned()),
        step_id: ctx.step_id(),
        phase: ctx.phase(),
        attempt: ctx.attempt(),
        worker: ctx.worker().to_owned(),
        at: Utc::now(),
        started_at: ctx.started_at(),
        log: ctx.take_log(),
        outcome,
    }
}
