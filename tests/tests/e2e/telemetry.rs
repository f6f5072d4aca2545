//! Traces leave a `berth` process over OTLP/HTTP when an endpoint is configured, and a task's
//! spans in a worker process carry the trace id the API gave the task.

use berth_contracts::TaskStatus;
use berth_tests::{World, WorldOptions};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A minimal OTLP/HTTP receiver: keeps every request body, answers 200.
async fn collector() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let keep = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    let n = match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    keep.lock()
                        .unwrap()
                        .push(buf[end + 4..end + 4 + len].to_vec());
                    buf.drain(..end + 4 + len);
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (format!("http://{addr}"), bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_exports_the_tasks_trace_over_otlp() {
    let (endpoint, bodies) = collector().await;
    let w = World::with_bare_server(WorldOptions {
        workers: false,
        ..Default::default()
    })
    .await;
    let (mut worker, _log) = w.spawn_berth("http", &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let t = w
        .create_task("noop", "server_master", json!({}))
        .await
        .unwrap();
    let task = w
        .wait_finished(t.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(task.status, TaskStatus::Success);
    // A graceful stop flushes the exporter.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || worker.wait()),
    )
    .await;
    let trace = hex::decode(&task.trace_id).unwrap();
    let contains = |b: &[u8], needle: &[u8]| b.windows(needle.len()).any(|w| w == needle);
    let bodies = bodies.lock().unwrap().clone();
    let carrying: Vec<&Vec<u8>> = bodies.iter().filter(|b| contains(b, &trace)).collect();
    assert!(
        !carrying.is_empty(),
        "no OTLP export carried trace {} ({} requests received)",
        task.trace_id,
        bodies.len()
    );
    // The export carrying the trace holds the worker's step span, with the task's values.
    let step = &task.steps.as_ref().unwrap()[0];
    for (what, value) in [
        ("the span name", "step".to_string()),
        ("the task id", task.id.to_string()),
        ("the step id", step.id.to_string()),
        ("the action", step.action.clone()),
        ("the server", step.server.clone()),
    ] {
        assert!(
            carrying.iter().any(|b| contains(b, value.as_bytes())),
            "the export of trace {} lacks {what} ({value})",
            task.trace_id
        );
    }
    w.stop().await;
}
