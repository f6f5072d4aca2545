//! Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write;

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when PostgreSQL answers and the broker connection is up.
pub async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    let db = state.store.ping().await;
    let broker = state.broker.queue_stats("state.tasks").await.map(|_| ());
    match (db, broker) {
        (Ok(()), Ok(())) => Ok((StatusCode::OK, "ready").into_response()),
        (db, broker) => {
            let mut why = Vec::new();
            if let Err(e) = db {
                why.push(format!("database: {e}"));
            }
            if let Err(e) = broker {
                why.push(format!("broker: {e}"));
            }
            Err(ApiError::Unavailable(why.join("; ")))
        }
    }
}

pub const OPENAPI: &str = include_str!("../../openapi.json");

pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text format. Task and step figures come from PostgreSQL (so they count
/// every process's work); queue depths from passive declares on the broker.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let snap = state.store.metrics_snapshot().await?;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP berth_tasks Tasks by type and status.");
    let _ = writeln!(out, "# TYPE berth_tasks gauge");
    for (ty, status, n) in &snap.tasks {
        let _ = writeln!(
            out,
            "berth_tasks{{type=\"{}\",status=\"{}\"}} {n}",
            esc(ty),
            esc(status)
        );
    }
    let _ = writeln!(
        out,
        "# HELP berth_step_duration_seconds Time from a step's first attempt to its end."
    );
    let _ = writeln!(out, "# TYPE berth_step_duration_seconds histogram");
    for (svc, action, le, n) in &snap.step_buckets {
        let _ = writeln!(
            out,
            "berth_step_duration_seconds_bucket{{service=\"{}\",action=\"{}\",le=\"{le}\"}} {n}",
            esc(svc),
            esc(action)
        );
    }
    for (svc, action, sum, count) in &snap.step_sums {
        let l = format!("service=\"{}\",action=\"{}\"", esc(svc), esc(action));
        let _ = writeln!(
            out,
            "berth_step_duration_seconds_bucket{{{l},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "berth_step_duration_seconds_sum{{{l}}} {sum}");
        let _ = writeln!(out, "berth_step_duration_seconds_count{{{l}}} {count}");
    }
    let _ = writeln!(
        out,
        "# HELP berth_step_retries_total Failed attempts that were retried or dead-lettered."
    );
    let _ = writeln!(out, "# TYPE berth_step_retries_total counter");
    for (svc, action, n) in &snap.retries {
        let _ = writeln!(
            out,
            "berth_step_retries_total{{service=\"{}\",action=\"{}\"}} {n}",
            esc(svc),
            esc(action)
        );
    }
    let _ = writeln!(
        out,
        "# HELP berth_dead_letters Dead letters neither replayed nor discarded."
    );
    let _ = writeln!(out, "# TYPE berth_dead_letters gauge");
    let _ = writeln!(out, "berth_dead_letters {}", snap.dead_letters_open);
    let _ = writeln!(
        out,
        "# HELP berth_outbox_unsent Outbox rows not yet published."
    );
    let _ = writeln!(out, "# TYPE berth_outbox_unsent gauge");
    let _ = writeln!(out, "berth_outbox_unsent {}", snap.outbox_unsent);
    let _ = writeln!(
        out,
        "# HELP berth_schedule_alerts_total Schedule alerts raised, by kind (missed, failing, overdue, drill_failed)."
    );
    let _ = writeln!(out, "# TYPE berth_schedule_alerts_total counter");
    for (kind, raised, _) in &snap.schedule_alerts {
        let _ = writeln!(
            out,
            "berth_schedule_alerts_total{{kind=\"{}\"}} {raised}",
            esc(kind)
        );
    }
    let _ = writeln!(
        out,
        "# HELP berth_schedule_alerts_open Schedule alerts raised and not cleared, by kind."
    );
    let _ = writeln!(out, "# TYPE berth_schedule_alerts_open gauge");
    for (kind, _, open) in &snap.schedule_alerts {
        let _ = writeln!(
            out,
            "berth_schedule_alerts_open{{kind=\"{}\"}} {open}",
            esc(kind)
        );
    }
    let _ = writeln!(
        out,
        "# HELP berth_schedule_runs Schedule runs kept (the history is pruned), by status."
    );
    let _ = writeln!(out, "# TYPE berth_schedule_runs gauge");
    for (status, n) in &snap.schedule_runs {
        let _ = writeln!(out, "berth_schedule_runs{{status=\"{}\"}} {n}", esc(status));
    }

    // (queue, its work queue's service and server)
    let mut queues: Vec<(String, Option<(&str, String)>)> =
        ["state.tasks", "state.events", "state.dead"]
            .iter()
            .map(|s| (s.to_string(), None))
            .collect();
    for server in state.store.list_servers().await? {
        for svc in berth_contracts::Service::ALL.map(|s| s.as_str()) {
            queues.push((
                berth_broker::topology::work_queue(svc, &server.name),
                Some((svc, server.name.clone())),
            ));
        }
    }
    let _ = writeln!(
        out,
        "# HELP berth_queue_messages Messages ready in a queue."
    );
    let _ = writeln!(out, "# TYPE berth_queue_messages gauge");
    let mut consumers = String::new();
    for (q, work) in &queues {
        // A server no worker has served yet has no work queues: they are made (empty)
        // rather than asked for passively, which fails and logs an error on each scrape.
        let stats = match work {
            Some((svc, server)) => state.broker.work_queue_stats(svc, server).await,
            None => state.broker.queue_stats(q).await,
        };
        if let Ok(d) = stats {
            let _ = writeln!(
                out,
                "berth_queue_messages{{queue=\"{}\"}} {}",
                esc(q),
                d.messages
            );
            let _ = writeln!(
                consumers,
                "berth_queue_consumers{{queue=\"{}\"}} {}",
                esc(q),
                d.consumers
            );
        }
    }
    let _ = writeln!(out, "# HELP berth_queue_consumers Consumers of a queue.");
    let _ = writeln!(out, "# TYPE berth_queue_consumers gauge");
    out.push_str(&consumers);
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response())
}
