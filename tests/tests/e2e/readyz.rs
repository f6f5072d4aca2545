//! `/readyz` answers 503 (problem+json naming what is down) while PostgreSQL or RabbitMQ
//! cannot be reached, and 200 again once it can; `/healthz` (the process is alive) stays
//! 200 throughout. The API reaches a fresh database on the machine's PostgreSQL and a
//! private RabbitMQ, each through a proxy the test cuts: the machine's own servers are
//! never stopped.

use berth_test_servers::daemons::{Daemon, Kind};
use berth_tests::proxy::Proxy;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

async fn addr_of(url: &str) -> SocketAddr {
    let u = reqwest::Url::parse(url).unwrap();
    let hp = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap());
    tokio::net::lookup_host(hp).await.unwrap().next().unwrap()
}

/// Polls `/readyz` until it answers `status`; its body.
async fn readyz_until(http: &reqwest::Client, api: &str, status: u16, why: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    let mut last = String::new();
    loop {
        if let Ok(r) = http
            .get(format!("{api}/readyz"))
            .timeout(Duration::from_secs(30))
            .send()
            .await
        {
            let got = r.status().as_u16();
            let ctype = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            let text = r.text().await.unwrap();
            if got == status {
                if status == 200 {
                    return Value::String(text);
                }
                assert_eq!(ctype.as_deref(), Some("application/problem+json"), "{text}");
                return serde_json::from_str(&text).unwrap();
            }
            last = format!("{got} {text}");
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {status} {why} (last: {last})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn healthz(http: &reqwest::Client, api: &str) -> u16 {
    http.get(format!("{api}/healthz"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_is_503_while_postgresql_or_rabbitmq_is_down_and_200_again_after() {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let dir = std::env::temp_dir().join(format!("berth-readyz-{id}"));
    let mq = {
        let d = dir.join("rabbitmq");
        tokio::task::spawn_blocking(move || Daemon::start(Kind::Rabbitmq, &d))
            .await
            .unwrap()
            .expect("a private RabbitMQ")
    };
    // The topology a state service declares when it starts (the API only uses it).
    {
        let c = lapin::Connection::connect(
            &format!("amqp://guest:guest@127.0.0.1:{}/%2f", mq.port),
            lapin::ConnectionProperties::default(),
        )
        .await
        .unwrap();
        let ch = c.create_channel().await.unwrap();
        berth_broker::topology::declare_core(&ch).await.unwrap();
        let _ = c.close(200, "declared".into()).await;
    }
    let admin = berth_tests::pg_admin_url();
    let db = format!("berth_readyz_{id}");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let pg_proxy = Proxy::start(addr_of(&admin).await, true).await.unwrap();
    let mq_proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], mq.port)), true)
        .await
        .unwrap();
    let u = reqwest::Url::parse(&admin).unwrap();
    let database_url = format!(
        "postgres://{}{}@{}/{db}",
        u.username(),
        u.password().map(|p| format!(":{p}")).unwrap_or_default(),
        pg_proxy.addr
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let cfg = berth_api::ApiConfig {
        listen: listener.local_addr().unwrap(),
        database_url,
        amqp_url: format!("amqp://guest:guest@{}/%2f", mq_proxy.addr),
        secret_key: berth_secrets::SecretKey::from_hex(&berth_secrets::SecretKey::generate_hex())
            .unwrap(),
        diagnostics: false,
        max_body_bytes: 65536,
        delete_enabled_sites: false,
        max_queued_tasks: 0,
        data_root: dir.clone(),
        limits: Default::default(),
        drill_domain: berth_hosting::drills::DEFAULT_DRILL_DOMAIN.into(),
        webhooks_allow_private: false,
        webhooks_rotation_grace: std::time::Duration::from_secs(86_400),
    };
    let served = tokio::spawn({
        let s = shutdown.clone();
        async move { berth_api::serve(listener, cfg, s).await }
    });
    let http = reqwest::Client::new();

    readyz_until(&http, &api, 200, "at start").await;

    pg_proxy.set_up(false);
    let p = readyz_until(&http, &api, 503, "with PostgreSQL down").await;
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("database"), "{p}");
    assert!(!detail.contains("broker"), "only the database is down: {p}");
    assert_eq!(healthz(&http, &api).await, 200);
    pg_proxy.set_up(true);
    readyz_until(&http, &api, 200, "with PostgreSQL back").await;

    mq_proxy.set_up(false);
    let p = readyz_until(&http, &api, 503, "with RabbitMQ down").await;
    let detail = p["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("broker"), "{p}");
    assert!(!detail.contains("database"), "only the broker is down: {p}");
    assert_eq!(healthz(&http, &api).await, 200);
    mq_proxy.set_up(true);
    readyz_until(&http, &api, 200, "with RabbitMQ back").await;

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), served).await;
    drop(mq);
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
