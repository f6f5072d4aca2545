//! Test helpers: a RabbitMQ vhost per test, so tests run side by side on one broker.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::time::{Duration, Instant};

use berth_broker::{Broker, CancellationToken, Delivery, MessageHeaders, Publisher, topology};
use berth_contracts::steps::{HttpServiceSpec, HttpStep};
use berth_contracts::{StepCommand, StepEvent, StepPhase, Work};
use lapin::options::BasicGetOptions;
use serde_json::{Value, json};
use uuid::Uuid;

/// Captured logs and real trace ids in tests (`RUST_LOG` to change the level).
pub fn init_logs() {
    berth_telemetry::init_for_tests();
}

/// A vhost of its own on the test broker, deleted when dropped.
pub struct TestVhost {
    pub name: String,
    /// AMQP URL of the vhost.
    pub url: String,
    api: String,
    user: String,
    password: String,
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

impl TestVhost {
    pub async fn new() -> Self {
        init_logs();
        let amqp = env_or("BERTH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672");
        let mgmt = env_or(
            "BERTH_TEST_RABBITMQ_MANAGEMENT",
            "http://guest:guest@127.0.0.1:15672",
        );
        let mut api = reqwest::Url::parse(&mgmt).expect("BERTH_TEST_RABBITMQ_MANAGEMENT is a URL");
        let user = api.username().to_owned();
        let password = api.password().unwrap_or_default().to_owned();
        api.set_username("").expect("http URL");
        api.set_password(None).expect("http URL");
        let api = api.as_str().trim_end_matches('/').to_owned();

        let name = format!("berth-test-{}", Uuid::new_v4().simple());
        let v = Self {
            url: format!("{}/{}", amqp.trim_end_matches('/'), name),
            name,
            api,
            user,
            password,
        };
        let client = reqwest::Client::new();
        let put = |path: String, body: Value| {
            client
                .put(format!("{}{}", v.api, path))
                .basic_auth(&v.user, Some(&v.password))
                .json(&body)
                .send()
        };
        let resp = put(format!("/api/vhosts/{}", v.name), json!({}))
            .await
            .expect("RabbitMQ management API (enable rabbitmq_management)");
        assert!(
            resp.status().is_success(),
            "create vhost: {}",
            resp.status()
        );
        let resp = put(
            format!("/api/permissions/{}/{}", v.name, v.user),
            json!({"configure": ".*", "write": ".*", "read": ".*"}),
        )
        .await
        .expect("set permissions");
        assert!(resp.status().is_success(), "permissions: {}", resp.status());
        v
    }

    /// Closes every client connection to the vhost, as a broker restart would.
    pub async fn kill_connections(&self) -> usize {
        let client = reqwest::Client::new();
        let conns: Vec<Value> = client
            .get(format!("{}/api/vhosts/{}/connections", self.api, self.name))
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .expect("list connections")
            .json()
            .await
            .expect("connections JSON");
        for c in &conns {
            let name = c["name"].as_str().expect("connection name");
            let encoded: String = name
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            client
                .delete(format!("{}/api/connections/{}", self.api, encoded))
                .basic_auth(&self.user, Some(&self.password))
                .send()
                .await
                .expect("close connection");
        }
        conns.len()
    }

    pub async fn broker(&self) -> Broker {
        Broker::connect(&self.url, &CancellationToken::new())
            .await
            .expect("connect to the test vhost")
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let url = format!("{}/api/vhosts/{}", self.api, self.name);
        let (user, password) = (self.user.clone(), self.password.clone());
        // Drop cannot await, and may run inside a runtime: delete from a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                reqwest::Client::new()
                    .delete(url)
                    .basic_auth(user, Some(password))
                    .send()
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// The next message of `queue` (auto-acked), waiting up to `timeout`.
pub async fn next_message(broker: &Broker, queue: &str, timeout: Duration) -> Option<Delivery> {
    let channel = broker.channel().await.expect("channel");
    let deadline = Instant::now() + timeout;
    loop {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic_get");
        if let Some(msg) = got {
            return Some(Delivery::from(&msg.delivery));
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Generous: it only matters when a test fails, and CI machines are busy.
pub const WAIT: Duration = Duration::from_secs(30);

/// The next step event on `state.events`, waiting up to [`WAIT`].
pub async fn next_event(broker: &Broker) -> StepEvent {
    let d = next_message(broker, topology::EVENTS_QUEUE, WAIT)
        .await
        .expect("a step event in time");
    serde_json::from_slice(&d.body).expect("a StepEvent")
}

pub fn step(server: &str, work: Work) -> StepCommand {
    StepCommand {
        task_id: Uuid::new_v4(),
        step_id: Uuid::new_v4(),
        task_type: work.action().into(),
        target: server.into(),
        server: server.into(),
        phase: StepPhase::Run,
        work,
        secrets: Default::default(),
    }
}

/// A diagnostic noop for the http worker, with these options (`sleep_ms`, `fail`).
pub fn noop(options: Value) -> Work {
    let mut spec = serde_json::json!({"service": "http"});
    for (k, v) in options.as_object().expect("noop options are an object") {
        spec[k] = v.clone();
    }
    Work::Noop(serde_json::from_value(spec).expect("a noop spec"))
}

/// A step for the test handler: an http verify whose type names how the handler behaves
/// (`flaky`, `forever`, `broken`) and whose port how many attempts fail first — the
/// framework under test never looks inside a step.
pub fn probe(behaviour: &str, times: u16) -> Work {
    Work::Http(HttpStep::Verify(HttpServiceSpec {
        service_type: behaviour.into(),
        port: times,
    }))
}

/// What a [`probe`] asks of the test handler.
pub fn probed(cmd: &StepCommand) -> (String, u32) {
    match &cmd.work {
        Work::Http(HttpStep::Verify(v)) => (v.service_type.clone(), u32::from(v.port)),
        other => (other.action().to_string(), 0),
    }
}

/// Publishes `cmd` to `berth.work` the way the state service does.
pub async fn send_step(publisher: &Publisher, cmd: &StepCommand) {
    publisher
        .publish_json(
            topology::WORK_EXCHANGE,
            &cmd.routing_key(),
            &cmd.step_id.to_string(),
            cmd,
            MessageHeaders::for_task(cmd.task_id),
        )
        .await
        .expect("publish the step");
}

/// Waits until `queue` exists with `n` consumers (a worker is ready), up to [`WAIT`].
pub async fn wait_for_consumers(broker: &Broker, queue: &str, n: u32) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(stats) = broker.queue_stats(queue).await
            && stats.consumers >= n
        {
            return;
        }
        assert!(Instant::now() < deadline, "no consumer on {queue} in time");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
