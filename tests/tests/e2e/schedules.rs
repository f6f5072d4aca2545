//! Schedules fired by real `berth serve scheduler` processes against the real servers:
//! exactly once per site and slot with two schedulers side by side, missed slots recorded
//! and alerted after a scheduler was down, backups held to their window and their cap.

use berth_schedule::Expression;
use berth_tests::{World, WorldOptions};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;
use uuid::Uuid;

/// Scheduler processes look at their schedules this often in these tests.
const TICK: &[(&str, &str)] = &[("BERTH_SCHEDULER_TICK_MS", "100")];

#[derive(Debug, sqlx::FromRow)]
struct Run {
    site: String,
    slot: DateTime<Utc>,
    status: String,
    task_id: Option<Uuid>,
    recorded_at: DateTime<Utc>,
}

async fn runs(w: &World, schedule: &str) -> Vec<Run> {
    sqlx::query_as(
        "SELECT site, slot, status, task_id, recorded_at FROM schedule_runs
         WHERE schedule = $1 ORDER BY slot, site",
    )
    .bind(schedule)
    .fetch_all(&w.store.pool)
    .await
    .unwrap()
}

async fn create_schedule(w: &World, body: Value) -> Value {
    let (status, s) = w.post_json("/api/v1/schedules", &body).await;
    assert_eq!(status, 201, "{s}");
    s
}

/// Disables a schedule: nothing fires after this answer.
async fn disable(w: &World, name: &str) -> DateTime<Utc> {
    let r = w
        .http
        .patch(format!("{}/api/v1/schedules/{name}", w.api))
        .bearer_auth(&w.token)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    Utc::now()
}

/// Waits until no task the schedule fired is queued or running.
async fn settle(w: &World, schedule: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM tasks WHERE requested_by = $1 AND status IN ('queued', 'processing')",
        )
        .bind(format!("schedule:{schedule}"))
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
        if n == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{n} scheduled tasks never ended"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The API's /metrics page.
async fn metrics(w: &World) -> String {
    let r = w.http.get(format!("{}/metrics", w.api)).send().await;
    r.unwrap().text().await.unwrap()
}

async fn sites(w: &World, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        let uri = w.site_uri(&format!("s{i}"));
        w.installed_on_platform(&uri).await;
        out.push(uri);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_fire_every_slot_of_every_site_exactly_once() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let sites = sites(&w, 2).await;
    let s = create_schedule(
        &w,
        json!({"name": "often", "scope": "platform:platform_d10", "expression": "*/3 * * * * *",
               "job": {"kind": "backup"}, "window_secs": 3, "spread_secs": 1}),
    )
    .await;
    let created: DateTime<Utc> = s["created_at"].as_str().unwrap().parse().unwrap();
    let (mut a, _) = w.spawn_berth("scheduler", TICK);
    let (mut b, _) = w.spawn_berth("scheduler", TICK);
    tokio::time::sleep(Duration::from_secs(25)).await;
    let stopped = disable(&w, "often").await;
    settle(&w, "often").await;
    a.kill().unwrap();
    b.kill().unwrap();
    let _ = (a.wait(), b.wait());

    let runs = runs(&w, "often").await;
    // Every slot whose window closed while the schedulers ran has one run per site: fired,
    // skipped (the site's backup still ran) or missed — and the unique key allows no second.
    let expr = Expression::parse("*/3 * * * * *", "UTC").unwrap();
    let (slots, _) = expr.slots_between(created, stopped - chrono::Duration::seconds(4), 1000);
    assert!(slots.len() >= 5, "{slots:?}");
    let mut per: BTreeMap<(String, DateTime<Utc>), usize> = BTreeMap::new();
    for r in &runs {
        *per.entry((r.site.clone(), r.slot)).or_default() += 1;
    }
    for site in &sites {
        for slot in &slots {
            assert_eq!(
                per.get(&(site.clone(), *slot)),
                Some(&1),
                "{site} at {slot}: {runs:#?}"
            );
        }
    }
    // One task per fired run, no task without its run, no run sharing a task.
    let fired: Vec<&Run> = runs.iter().filter(|r| r.status == "fired").collect();
    let task_ids: HashSet<Uuid> = fired.iter().map(|r| r.task_id.unwrap()).collect();
    assert_eq!(task_ids.len(), fired.len());
    let (tasks,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM tasks WHERE requested_by = 'schedule:often'")
            .fetch_one(&w.store.pool)
            .await
            .unwrap();
    assert_eq!(tasks as usize, fired.len(), "{runs:#?}");
    for site in &sites {
        assert!(fired.iter().any(|r| &r.site == site), "{site} never fired");
    }
    // The backups say where they come from.
    let backups = w
        .get_json(&format!("/api/v1/sites/{}/backups", sites[0]))
        .await;
    assert!(
        backups
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["description"] == "Generated by schedule"),
        "{backups}"
    );
    let counts = |status: &str| runs.iter().filter(|r| r.status == status).count();
    println!(
        "{} slots x {} sites: {} runs, {} fired, {} skipped, {} missed, {tasks} tasks",
        slots.len(),
        sites.len(),
        runs.len(),
        counts("fired"),
        counts("skipped"),
        counts("missed")
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduler_down_for_several_slots_runs_those_within_the_deadline_and_alerts_the_rest() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let site = sites(&w, 1).await.remove(0);
    create_schedule(
        &w,
        json!({"name": "every2", "scope": format!("site:{site}"), "expression": "*/2 * * * * *",
               "job": {"kind": "backup"}, "window_secs": 5, "spread_secs": 0}),
    )
    .await;
    let (mut a, _) = w.spawn_berth("scheduler", TICK);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !runs(&w, "every2").await.iter().any(|r| r.status == "fired") {
        assert!(std::time::Instant::now() < deadline, "nothing fired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.kill().unwrap();
    let _ = a.wait();
    let down_at = Utc::now();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let restart = Utc::now();
    let (mut b, _) = w.spawn_berth("scheduler", TICK);
    tokio::time::sleep(Duration::from_secs(4)).await;
    disable(&w, "every2").await;
    settle(&w, "every2").await;
    b.kill().unwrap();
    let _ = b.wait();

    let runs = runs(&w, "every2").await;
    let window = chrono::Duration::seconds(5);
    let during: Vec<&Run> = runs
        .iter()
        .filter(|r| r.slot > down_at && r.slot < restart)
        .collect();
    assert!(during.len() >= 5, "{runs:#?}");
    for r in &during {
        if r.slot + window < restart {
            // Its window closed while no scheduler ran: recorded missed, never fired late.
            assert_eq!(r.status, "missed", "{r:?}");
        } else {
            // Still within its deadline when the scheduler came back: it ran.
            assert_ne!(r.status, "missed", "{r:?}");
            assert!(
                r.recorded_at <= r.slot + window + chrono::Duration::seconds(1),
                "{r:?}"
            );
        }
    }
    assert!(during.iter().any(|r| r.status == "missed"));
    assert!(during.iter().any(|r| r.status != "missed"));
    // The alert is on the schedule (cleared once runs fired again) …
    let alerts = w
        .get_json("/api/v1/schedule-alerts?schedule=every2&all=true")
        .await;
    let missed = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "missed" && a["site"] == site.as_str())
        .unwrap_or_else(|| panic!("no missed alert: {alerts}"));
    assert!(
        missed["message"]
            .as_str()
            .unwrap()
            .contains("did not start within its window")
    );
    // … and told to the outside world as a notice.
    let broker = berth_broker::Broker::new(&w.amqp_url);
    let channel = broker.channel().await.unwrap();
    let mut notices = Vec::new();
    while let Some(m) = channel
        .basic_get(
            berth_broker::topology::NOTICES_QUEUE.into(),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        notices.push(serde_json::from_slice::<Value>(&m.delivery.data).unwrap());
    }
    assert!(
        notices.iter().any(|n| n["type"] == "schedule.alert"
            && n["data"]["kind"] == "missed"
            && n["data"]["site"] == site.as_str()),
        "{notices:#?}"
    );
    // Metrics count the alerts.
    let metrics = metrics(&w).await;
    assert!(
        metrics.contains("berth_schedule_alerts_total{kind=\"missed\"}"),
        "{metrics}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_start_only_inside_their_window_and_never_more_than_the_cap_at_once() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let sites = sites(&w, 3).await;
    create_schedule(
        &w,
        json!({"name": "nightly", "scope": "all", "expression": "*/15 * * * * *",
               "job": {"kind": "backup"}, "window_secs": 6, "spread_secs": 0,
               "cap_per_web_server": 1}),
    )
    .await;
    let (mut a, _) = w.spawn_berth("scheduler", TICK);
    let (mut b, _) = w.spawn_berth("scheduler", TICK);
    tokio::time::sleep(Duration::from_secs(32)).await;
    let stopped = disable(&w, "nightly").await;
    settle(&w, "nightly").await;
    a.kill().unwrap();
    b.kill().unwrap();
    let _ = (a.wait(), b.wait());

    let runs = runs(&w, "nightly").await;
    let fired: Vec<&Run> = runs.iter().filter(|r| r.status == "fired").collect();
    assert!(fired.len() >= 2, "{runs:#?}");
    // Started only inside the window.
    for r in &fired {
        assert!(r.recorded_at >= r.slot, "{r:?}");
        assert!(
            r.recorded_at <= r.slot + chrono::Duration::seconds(6),
            "{r:?}"
        );
    }
    // Never two at once on the web server: from queued to finished, no overlap.
    let spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT created_at, finished_at FROM tasks WHERE requested_by = 'schedule:nightly' ORDER BY created_at",
    )
    .fetch_all(&w.store.pool)
    .await
    .unwrap();
    assert_eq!(spans.len(), fired.len());
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "two backups at once: {spans:#?}");
    }
    // Every site of every closed slot has its run: fired, or missed when the cap held it
    // past the window.
    let slots: HashSet<DateTime<Utc>> = fired
        .iter()
        .map(|r| r.slot)
        .filter(|s| *s + chrono::Duration::seconds(6) < stopped)
        .collect();
    assert!(!slots.is_empty());
    for slot in slots {
        for site in &sites {
            assert!(
                runs.iter().any(|r| r.slot == slot && &r.site == site),
                "{site} {slot}"
            );
        }
    }
    w.stop().await;
}

/// The fixture's cron counter in a Drupal 10 site's own database.
async fn cron_runs(db: &str) -> i64 {
    let v: Option<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT value FROM `{db}`.key_value WHERE collection = 'state' AND name = 'berth_fixture_cron_runs'"
    )))
    .fetch_optional(&mut berth_tests::mysql().await)
    .await
    .unwrap();
    v.map_or(0, |v| {
        String::from_utf8(v)
            .unwrap()
            .trim_start_matches("i:")
            .trim_end_matches(';')
            .parse()
            .unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cron_runs_on_its_schedule_in_the_sites_database_and_a_failed_site_goes_first() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let sites = sites(&w, 2).await;
    let db = |uri: &str| {
        let w = &w;
        let uri = uri.to_string();
        async move {
            w.get_json(&format!("/api/v1/sites/{uri}")).await["db_name"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let (good, bad) = (&sites[0], &sites[1]);
    let (good_db, bad_db) = (db(good).await, db(bad).await);
    // The second site's hook_cron() throws, by the fixture's marker.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "REPLACE INTO `{bad_db}`.key_value (collection, name, value)
         VALUES ('state', 'berth_fixture_cron_fail', 'i:1;')"
    )))
    .execute(&mut berth_tests::mysql().await)
    .await
    .unwrap();
    create_schedule(
        &w,
        json!({"name": "cron", "scope": "all", "expression": "*/4 * * * * *",
               "job": {"kind": "cron"}, "window_secs": 4, "spread_secs": 3}),
    )
    .await;
    let (mut a, _) = w.spawn_berth("scheduler", TICK);
    tokio::time::sleep(Duration::from_secs(18)).await;
    disable(&w, "cron").await;
    settle(&w, "cron").await;
    a.kill().unwrap();
    let _ = a.wait();

    let runs = runs(&w, "cron").await;
    let fired = |site: &str| -> Vec<&Run> {
        runs.iter()
            .filter(|r| r.site == site && r.status == "fired")
            .collect()
    };
    // The cron ran on its schedule: as many times in the site's own database as it fired.
    let good_runs = fired(good);
    assert!(good_runs.len() >= 3, "{runs:#?}");
    assert_eq!(cron_runs(&good_db).await, good_runs.len() as i64);
    let site = w.get_json(&format!("/api/v1/sites/{good}")).await;
    assert_eq!(site["last_cron"]["result"], "success", "{site}");
    // Spread: the good site's runs are due at its own offset in the slot.
    let spread = chrono::Duration::seconds(3);
    let offset = berth_schedule::offset("cron", good, spread);
    for r in &good_runs {
        let due: (DateTime<Utc>,) = sqlx::query_as(
            "SELECT due_at FROM schedule_runs WHERE schedule = 'cron' AND site = $1 AND slot = $2",
        )
        .bind(good)
        .bind(r.slot)
        .fetch_one(&w.store.pool)
        .await
        .unwrap();
        assert_eq!(due.0, r.slot + offset);
    }
    // The failing site: its runs failed (nothing counted), and after its first failure each
    // of its runs was due at the very start of the slot: retried first.
    let bad_runs = fired(bad);
    assert!(bad_runs.len() >= 3, "{runs:#?}");
    assert_eq!(cron_runs(&bad_db).await, 0);
    assert_ne!(
        berth_schedule::offset("cron", bad, spread),
        chrono::Duration::zero()
    );
    let dues: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT slot, due_at FROM schedule_runs WHERE schedule = 'cron' AND site = $1
         AND status = 'fired' ORDER BY slot",
    )
    .bind(bad)
    .fetch_all(&w.store.pool)
    .await
    .unwrap();
    for (slot, due) in &dues[1..] {
        assert_eq!(due, slot, "a failed site's next run is not first: {dues:?}");
    }
    let site = w.get_json(&format!("/api/v1/sites/{bad}")).await;
    assert_eq!(site["last_cron"]["result"], "failed", "{site}");
    // Three failures in a row raise the schedule's alert for that site only.
    let alerts = w.get_json("/api/v1/schedule-alerts?schedule=cron").await;
    let failing: Vec<&Value> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "failing")
        .collect();
    assert_eq!(failing.len(), 1, "{alerts}");
    assert_eq!(failing[0]["site"], bad.as_str());
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drill_schedule_verifies_a_sample_of_sites_and_alerts_on_a_corrupted_backup() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let sites = sites(&w, 2).await;
    let mut paths = Vec::new();
    for uri in &sites {
        w.run_success("backup", uri, json!({})).await;
        let b = w.get_json(&format!("/api/v1/sites/{uri}/backups")).await;
        paths.push(b[0]["path"].as_str().unwrap().to_string());
    }
    // The second site's backup is cut in half: it cannot be restored.
    let bytes = std::fs::read(&paths[1]).unwrap();
    std::fs::write(&paths[1], &bytes[..bytes.len() / 2]).unwrap();
    create_schedule(
        &w,
        json!({"name": "drills", "scope": "all", "expression": "*/4 * * * * *",
               "job": {"kind": "drill", "sample": 1}, "window_secs": 4, "spread_secs": 0}),
    )
    .await;
    let (mut a, _) = w.spawn_berth("scheduler", TICK);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let alerts = w.get_json("/api/v1/schedule-alerts?schedule=drills").await;
        if alerts
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "drill_failed")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no drill_failed alert: {alerts}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    disable(&w, "drills").await;
    settle(&w, "drills").await;
    a.kill().unwrap();
    let _ = a.wait();

    // A sample of one: never two drills in a slot.
    let runs = runs(&w, "drills").await;
    let mut per_slot: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for r in runs.iter().filter(|r| r.status == "fired") {
        *per_slot.entry(r.slot).or_default() += 1;
    }
    assert!(per_slot.values().all(|&n| n == 1), "{runs:#?}");
    // The least recently verified first: the first site was drilled and its backup verified…
    let good = w
        .get_json(&format!("/api/v1/sites/{}/backups", sites[0]))
        .await;
    assert!(good[0]["verified_at"].is_string(), "{good}");
    // … and the corrupted backup failed its drill: alerted for that site only, told as a notice.
    let bad = w
        .get_json(&format!("/api/v1/sites/{}/backups", sites[1]))
        .await;
    assert!(bad[0].get("verified_at").is_none(), "{bad}");
    let alerts = w.get_json("/api/v1/schedule-alerts?schedule=drills").await;
    let failed: Vec<&Value> = alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "drill_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{alerts}");
    assert_eq!(failed[0]["site"], sites[1].as_str());
    let metrics = metrics(&w).await;
    assert!(
        metrics.contains("berth_schedule_alerts_open{kind=\"drill_failed\"} 1"),
        "{metrics}"
    );
    w.stop().await;
}
