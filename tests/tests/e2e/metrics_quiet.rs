//! `/metrics` on a system with a server whose queues do not exist yet (no worker ever ran
//! for it) reports them as empty, and logs no ERROR line for them (issue 10).

use berth_tests::{World, WorldOptions};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_for_a_server_without_queues_log_no_error() {
    let w = World::start_with(WorldOptions::default()).await.unwrap();
    // No worker serves this server: its work queues were never declared.
    w.create_bare_server("server_web1examplecom", "web1.example.com")
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let (mut api, log) = w.spawn_berth("api", &[("BERTH_LISTEN", &listen)]);
    let url = format!("http://{listen}/metrics");
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        if let Ok(r) = w.http.get(&url).send().await
            && r.status().is_success()
        {
            break r.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the api process never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A second scrape, as Prometheus does every few seconds.
    let again = w.http.get(&url).send().await.unwrap().text().await.unwrap();
    let _ = api.kill();
    let _ = api.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\""))
        .collect();
    assert!(errors.is_empty(), "ERROR lines:\n{}", errors.join("\n"));
    for b in [&body, &again] {
        assert!(
            b.contains("berth_queue_messages{queue=\"work.http.server_web1examplecom\"} 0"),
            "{b}"
        );
    }

    w.stop().await;
}
