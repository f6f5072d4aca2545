//! Signed webhook deliveries (decision 0021).
//!
//! ```text
//! notices.outbound --notice--> on_notice: match endpoints, INSERT one delivery per endpoint,
//!                              wake each (berth.webhooks), ack
//! webhooks.deliveries --wake--> on_wake: claim the row (lease), POST it signed, record the
//!                              attempt and the delivery's next state in one transaction,
//!                              park the next wake-up in berth.webhooks.wait.<d>ms, ack
//! sweep (every BERTH_WEBHOOKS_SWEEP_S): wake pending rows whose wake-up was lost, and
//!                              forget deliveries finished longer ago than
//!                              BERTH_WEBHOOKS_LOG_KEEP_S (the log is bounded)
//! ```
//!
//! The delivery row in PostgreSQL is the truth: a wake-up is acked only after what it
//! caused is committed, a wake-up that finds the row already moved on does nothing, and a
//! wake-up lost between a commit and its publish (a crash) is found by the sweep. A
//! receiver may get an attempt twice (a crash after its POST, before the commit): the
//! `webhook-id` lets it see that, as the spec expects.

use crate::{NoticesConfig, NoticesError};
use berth_broker::topology::{
    self, NOTICES_QUEUE, Topology, WEBHOOKS_EXCHANGE, WEBHOOKS_QUEUE, WEBHOOKS_ROUTING_KEY,
};
use berth_broker::{
    Broker, ConsumeOptions, Delivery, HandlerError, MessageHeaders, Publisher, consume_with,
};
use berth_contracts::webhook::{DeliveryStatus, WebhookWake};
use berth_contracts::{Notice, NoticeEvent, TaskType};
use berth_store::Store;
use berth_store::webhooks::{self as stored, AttemptRecord, Claimed, NewDeliveries};
use berth_webhook::{EventFacts, Filter, Next, Outcome, Secret};
use chrono::Utc;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Deliveries the sweep wakes at once.
const SWEEP_BATCH: i64 = 500;
/// Finished events the sweep forgets per batch, and batches per sweep: a log that grew
/// while no notices process ran is worked down over several sweeps, not in one long lock.
const PRUNE_BATCH: i64 = 2_000;
const PRUNE_BATCHES: u32 = 20;
/// A wake-up this early (clock skew, rounding) is taken as on time.
const EARLY_OK: Duration = Duration::from_millis(50);

struct Ctx {
    store: Store,
    broker: Broker,
    publisher: Publisher,
    http: reqwest::Client,
    cfg: NoticesConfig,
    task_types: Vec<&'static str>,
    /// Tier wait queues this process declared (declared again after a broker error).
    declared: Mutex<HashSet<u64>>,
}

pub async fn run(cfg: NoticesConfig, shutdown: CancellationToken) -> Result<(), NoticesError> {
    let store = Store::connect(&cfg.database_url, u32::from(cfg.concurrency) + 4).await?;
    let broker = Broker::new(&cfg.amqp_url);
    let mut http = reqwest::Client::builder()
        .timeout(cfg.timeout)
        // A redirect would lead past the URL guard; a 3xx is a failed attempt.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")));
    if !cfg.allow_private {
        http = http.dns_resolver(Arc::new(GuardedResolver));
    }
    let ctx = Arc::new(Ctx {
        publisher: Publisher::new(broker.clone()),
        store,
        broker: broker.clone(),
        http: http.build()?,
        task_types: TaskType::ALL.iter().map(|t| t.as_str()).collect(),
        cfg: cfg.clone(),
        declared: Mutex::new(HashSet::new()),
    });
    tracing::info!(
        concurrency = cfg.concurrency,
        tiers_ms = ?cfg.retry.tiers.iter().map(|d| d.as_millis() as u64).collect::<Vec<_>>(),
        allow_private = cfg.allow_private,
        "notices service running"
    );
    let c = ctx.clone();
    let notices = consume_with(
        &broker,
        ConsumeOptions::new(
            vec![NOTICES_QUEUE.into()],
            cfg.concurrency.clamp(1, 16),
            Topology::core(),
        ),
        shutdown.clone(),
        move |d| on_notice(c.clone(), d),
    );
    let c = ctx.clone();
    let wakes = consume_with(
        &broker,
        ConsumeOptions::new(
            vec![WEBHOOKS_QUEUE.into()],
            cfg.concurrency.max(1),
            Topology::core(),
        ),
        shutdown.clone(),
        move |d| on_wake(c.clone(), d),
    );
    let sweeping = sweep(ctx.clone(), shutdown.clone());
    let (a, b, ()) = tokio::join!(notices, wakes, sweeping);
    a?;
    b?;
    Ok(())
}

/// Whether an endpoint bound to `endpoint` (a client id, or none: every client) hears an
/// event about `event`'s client.
pub fn client_matches(endpoint: Option<Uuid>, event: Option<&str>) -> bool {
    match endpoint {
        None => true,
        Some(c) => event.is_some_and(|e| e.eq_ignore_ascii_case(&c.to_string())),
    }
}

async fn on_notice(ctx: Arc<Ctx>, d: Delivery) -> Result<(), HandlerError> {
    let notice: Notice = match serde_json::from_slice(&d.body) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, message_id = ?d.message_id, "unreadable notice dropped");
            return Err(HandlerError::Reject(format!("unreadable notice: {e}")));
        }
    };
    let facts = EventFacts {
        kind: notice.event.kind(),
        task: notice.event.task_facts(),
    };
    let retry = |e: berth_store::StoreError| HandlerError::Retry(e.to_string());
    let mut conn = ctx
        .store
        .pool
        .acquire()
        .await
        .map_err(|e| HandlerError::Retry(e.to_string()))?;
    let matched: Vec<Uuid> = stored::enabled_endpoints(&mut conn)
        .await
        .map_err(retry)?
        .into_iter()
        .filter(|s| {
            client_matches(s.client_id, notice.event.client())
                && Filter::any_matches(&s.events, &facts, &NoticeEvent::KINDS, &ctx.task_types)
        })
        .map(|s| s.id)
        .collect();
    if matched.is_empty() {
        return Ok(());
    }
    let body = serde_json::to_string(&notice).expect("serialisable");
    let pending = stored::insert_deliveries(
        &mut conn,
        NewDeliveries {
            event_id: notice.id,
            event_type: facts.kind,
            body: &body,
            traceparent: d.headers.traceparent.as_deref().unwrap_or(""),
            endpoints: &matched,
        },
    )
    .await
    .map_err(retry)?;
    drop(conn);
    tracing::debug!(event = %notice.id, kind = facts.kind, deliveries = pending.len(), "notice matched");
    // Confirms awaited together: one notice may fan out to many endpoints.
    let woken =
        futures_util::future::join_all(pending.iter().map(|id| wake(&ctx, *id, 0, Duration::ZERO)))
            .await;
    for w in woken {
        w.map_err(|e| HandlerError::Retry(e.to_string()))?;
    }
    Ok(())
}

async fn on_wake(ctx: Arc<Ctx>, d: Delivery) -> Result<(), HandlerError> {
    let woken: WebhookWake = serde_json::from_slice(&d.body)
        .map_err(|e| HandlerError::Reject(format!("unreadable webhook wake-up: {e}")))?;
    // Long enough for the attempt and its record; a crashed process's runs out soon after.
    let lease = ctx.cfg.timeout + Duration::from_secs(5);
    let retry = |e: String| HandlerError::Retry(e);
    let mut conn = ctx
        .store
        .pool
        .acquire()
        .await
        .map_err(|e| retry(e.to_string()))?;
    let Some(claimed) = stored::claim(&mut conn, woken.delivery_id, woken.after_attempts, lease)
        .await
        .map_err(|e| retry(e.to_string()))?
    else {
        return Ok(()); // delivered, given up, moved on, or held by another attempt
    };
    let now = Utc::now();
    if let Some(due) = claimed.next_attempt_at
        && let Ok(early) = (due - now).to_std()
        && early > EARLY_OK
    {
        stored::release(&mut conn, claimed.id)
            .await
            .map_err(|e| retry(e.to_string()))?;
        return wake(&ctx, claimed.id, claimed.attempts, early)
            .await
            .map_err(|e| retry(e.to_string()));
    }
    if !claimed.enabled {
        return stored::skip(&mut conn, claimed.id)
            .await
            .map_err(|e| retry(e.to_string()));
    }
    drop(conn);

    let number = claimed.attempts + 1;
    let tried = attempt(&ctx, &claimed).await;
    let next = match &tried.refused {
        Some(_) => Next::GiveUp,
        None => berth_webhook::decide(&tried.outcome, number as u32, &ctx.cfg.retry),
    };
    let (status, next_at) = match &next {
        Next::Delivered => (DeliveryStatus::Delivered, None),
        Next::RetryIn(after) => (
            DeliveryStatus::Pending,
            Some(Utc::now() + chrono::Duration::from_std(*after).unwrap_or_default()),
        ),
        Next::DisableEndpoint | Next::GiveUp => (DeliveryStatus::Failed, None),
    };
    let status_code = match tried.outcome {
        Outcome::Answered { status, .. } => Some(i32::from(status)),
        Outcome::NoAnswer => None,
    };
    tracing::info!(delivery = %claimed.id, endpoint = %claimed.endpoint_id, attempt = number,
        status_code, latency_ms = tried.latency_ms, error = tried.error.as_deref(),
        next = ?next, "webhook attempt");
    let recorded = async {
        let mut tx = ctx.store.pool.begin().await?;
        let fresh = stored::record_attempt(
            &mut tx,
            AttemptRecord {
                delivery: claimed.id,
                number,
                status_code,
                latency_ms: tried.latency_ms,
                error: tried.error.as_deref(),
                status,
                next_attempt_at: next_at,
            },
        )
        .await?;
        if fresh && next == Next::DisableEndpoint {
            let reason = format!(
                "the receiver answered 410 Gone at {}: disabled (PATCH enabled=true to resume)",
                Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            stored::disable_endpoint(&mut tx, claimed.endpoint_id, &reason).await?;
        }
        tx.commit().await?;
        Ok::<bool, berth_store::StoreError>(fresh)
    }
    .await
    .map_err(|e| retry(e.to_string()))?;
    if let (true, Next::RetryIn(after)) = (recorded, next)
        && let Err(e) = wake(&ctx, claimed.id, number, after).await
    {
        // Committed: the sweep wakes it once it is overdue.
        tracing::warn!(delivery = %claimed.id, error = %e, "could not park the next attempt; the sweep will");
    }
    Ok(())
}

struct Tried {
    outcome: Outcome,
    latency_ms: i64,
    error: Option<String>,
    /// The URL is refused (by the guard) or the secret cannot be opened: no retry helps.
    refused: Option<String>,
}

impl Tried {
    fn refused(why: String) -> Self {
        Self {
            outcome: Outcome::NoAnswer,
            latency_ms: 0,
            error: Some(why.clone()),
            refused: Some(why),
        }
    }
}

/// One POST of the delivery, signed with the endpoint's secret (and its previous one while
/// a rotation's grace lasts).
async fn attempt(ctx: &Ctx, c: &Claimed) -> Tried {
    let (url, host, port) = match berth_webhook::check_url(&c.url) {
        Ok(u) => u,
        Err(e) => return Tried::refused(e.to_string()),
    };
    if !ctx.cfg.allow_private {
        // Checked again here, not only when the endpoint was saved: DNS may have changed
        // (the client's resolver checks the addresses it connects to as well).
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => {
                for a in addrs {
                    if let Err(e) = berth_webhook::check_addr(&host, a.ip(), false) {
                        return Tried::refused(e.to_string());
                    }
                }
            }
            Err(e) => {
                return Tried {
                    outcome: Outcome::NoAnswer,
                    latency_ms: 0,
                    error: Some(format!("cannot resolve `{host}`: {e}")),
                    refused: None,
                };
            }
        }
    }
    let mut secrets = Vec::new();
    match open_secret(ctx, &c.secret_sealed) {
        Ok(s) => secrets.push(s),
        Err(why) => return Tried::refused(why),
    }
    if let (Some(prev), Some(until)) = (&c.previous_secret_sealed, c.previous_secret_until)
        && until > Utc::now()
        && let Ok(s) = open_secret(ctx, prev)
    {
        secrets.push(s);
    }
    let ts = Utc::now().timestamp();
    let id = c.event_id.to_string();
    let signature = berth_webhook::signature_header(
        &secrets.iter().collect::<Vec<_>>(),
        &id,
        ts,
        c.body.as_bytes(),
    );
    let mut req = ctx
        .http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(berth_webhook::HEADER_ID, &id)
        .header(berth_webhook::HEADER_TIMESTAMP, ts.to_string())
        .header(berth_webhook::HEADER_SIGNATURE, signature)
        .body(c.body.clone());
    if !c.traceparent.is_empty() {
        req = req.header("traceparent", &c.traceparent);
    }
    let started = Instant::now();
    let sent = req.send().await;
    let latency_ms = started.elapsed().as_millis() as i64;
    match sent {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| berth_webhook::parse_retry_after(v, Utc::now().timestamp()));
            let error = (!resp.status().is_success()).then(|| format!("HTTP {status}"));
            Tried {
                outcome: Outcome::Answered {
                    status,
                    retry_after,
                },
                latency_ms,
                error,
                refused: None,
            }
        }
        Err(e) => Tried {
            outcome: Outcome::NoAnswer,
            latency_ms,
            error: Some(error_text(e)),
            refused: None,
        },
    }
}

fn open_secret(ctx: &Ctx, sealed: &str) -> Result<Secret, String> {
    let text =
        ctx.cfg.secret_key.open(sealed).map_err(|_| {
            "cannot open the endpoint's secret (another BERTH_SECRET_KEY?)".to_string()
        })?;
    Secret::parse(&text).map_err(|e| format!("the endpoint's stored secret: {e}"))
}

/// A client error with its causes, without the URL (its query may hold a token).
fn error_text(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Wakes delivery `id` (which has made `after_attempts` attempts) in `after`: at once
/// through `berth.webhooks`, or through the wait queue of that delay.
async fn wake(
    ctx: &Ctx,
    id: Uuid,
    after_attempts: i32,
    after: Duration,
) -> Result<(), berth_broker::BrokerError> {
    let body = serde_json::to_vec(&WebhookWake {
        delivery_id: id,
        after_attempts,
    })?;
    let message_id = format!("{id}:{after_attempts}");
    let exchange = if after.is_zero() {
        WEBHOOKS_EXCHANGE.to_string()
    } else {
        wait_queue(ctx, after).await?
    };
    let sent = ctx
        .publisher
        .publish(
            &exchange,
            WEBHOOKS_ROUTING_KEY,
            &message_id,
            &body,
            MessageHeaders::default(),
        )
        .await;
    if sent.is_err() {
        ctx.declared.lock().await.clear();
    }
    sent
}

/// The wait queue for `after`: a tier's (declared once), or one for a `Retry-After` or an
/// early wake-up (whole seconds, so there are few; declared on each use, so that its
/// `x-expires` starts again, and gone when unused for a while).
async fn wait_queue(ctx: &Ctx, after: Duration) -> Result<String, berth_broker::BrokerError> {
    let ms = after.as_millis() as u64;
    let tier = ctx
        .cfg
        .retry
        .tiers
        .iter()
        .any(|t| t.as_millis() as u64 == ms);
    if tier {
        let mut declared = ctx.declared.lock().await;
        let name = topology::webhook_wait(ms);
        if !declared.contains(&ms) {
            let channel = ctx.broker.channel().await?;
            topology::declare_webhook_wait(&channel, &name, ms, None).await?;
            declared.insert(ms);
        }
        return Ok(name);
    }
    let secs = ms.div_ceil(1000);
    let expires = Duration::from_secs(secs * 2 + 600);
    let channel = ctx.broker.channel().await?;
    topology::declare_webhook_wait(
        &channel,
        &topology::webhook_after(secs),
        secs * 1000,
        Some(expires),
    )
    .await
}

/// Wakes the pending deliveries whose wake-up was lost, every `sweep_every`.
async fn sweep(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ctx.cfg.sweep_every) => {}
            _ = shutdown.cancelled() => return,
        }
        let overdue = async {
            let mut conn = ctx.store.pool.acquire().await?;
            stored::overdue(&mut conn, ctx.cfg.sweep_every, SWEEP_BATCH).await
        }
        .await;
        match overdue {
            Ok(rows) => {
                if !rows.is_empty() {
                    tracing::warn!(deliveries = rows.len(), "waking overdue webhook deliveries");
                }
                for (id, after_attempts) in rows {
                    if let Err(e) = wake(&ctx, id, after_attempts, Duration::ZERO).await {
                        tracing::warn!(error = %e, "webhook sweep: cannot publish");
                        break;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "webhook sweep: cannot read deliveries"),
        }
        match prune(&ctx).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deliveries = n, "forgot finished webhook deliveries"),
            Err(e) => tracing::warn!(error = %e, "webhook sweep: cannot prune the delivery log"),
        }
    }
}

/// Deletes deliveries finished longer ago than the log keeps them, in batches.
async fn prune(ctx: &Ctx) -> Result<u64, berth_store::StoreError> {
    let mut conn = ctx.store.pool.acquire().await?;
    let mut gone = 0;
    for _ in 0..PRUNE_BATCHES {
        let n = stored::prune_finished(&mut conn, ctx.cfg.log_keep, PRUNE_BATCH).await?;
        gone += n;
        if n == 0 {
            break;
        }
    }
    Ok(gone)
}

/// Resolves host names for the webhook client and refuses loopback and private addresses,
/// so that a name that changed after its check still cannot lead inside.
struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for a in &addrs {
                berth_webhook::check_addr(&host, a.ip(), false)?;
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_bound_to_a_client_hears_only_that_client() {
        let c = Uuid::now_v7();
        assert!(client_matches(None, None));
        assert!(client_matches(None, Some("anyone")));
        assert!(client_matches(Some(c), Some(&c.to_string())));
        assert!(client_matches(Some(c), Some(&c.to_string().to_uppercase())));
        assert!(!client_matches(Some(c), None));
        assert!(!client_matches(Some(c), Some("acme")));
        assert!(!client_matches(Some(c), Some(&Uuid::now_v7().to_string())));
    }
}
