//! The bounded webhook delivery log against a real PostgreSQL: what
//! `webhooks::prune_finished` forgets (an event's deliveries to an endpoint once every one
//! of them finished before the cut-off, their attempts with them) and what it keeps (a
//! pending delivery, a redelivery still going or finished lately, the same event's delivery
//! to another endpoint); older groups it must keep never stop it from reaching younger ones
//! it may forget.

mod common;

use berth_store::webhooks::prune_finished;
use common::Db;
use std::time::Duration;

const KEEP: Duration = Duration::from_secs(30 * 86_400);
/// Old groups that must stay (a redelivery still pending), more than a batch, and older
/// than every group that may go.
const STUCK: i64 = 2_500;
/// Old groups that may go, more than a batch.
const OLD: i64 = 3_000;
const BATCH: i64 = 1_000;

/// A delivery of event `event` to endpoint `ep`, finished (or, for `pending`, created)
/// `days` ago, with `attempts` attempts logged; `of` is the delivery it redelivers.
fn delivery(id: &str, ep: u8, event: &str, status: &str, days: f64, of: Option<&str>) -> String {
    let finished = if status == "pending" {
        "NULL".to_string()
    } else {
        format!("now() - make_interval(secs => {days} * 86400)")
    };
    let of = of.map_or("NULL".to_string(), |o| format!("'{o}'"));
    format!(
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, body, status,
                                         attempts, redelivery_of, created_at, finished_at)
         VALUES ('{id}', '00000000-0000-0000-0000-00000000000{ep}', '{event}', 'task.finished',
                 '{{}}', '{status}', 1, {of},
                 now() - make_interval(secs => {days} * 86400 + 60), {finished});
         INSERT INTO webhook_attempts (delivery_id, number, status_code, latency_ms)
         VALUES ('{id}', 1, 200, 5);"
    )
}

fn id(n: u32) -> String {
    format!("10000000-0000-0000-0000-{n:012}")
}

fn event(n: u32) -> String {
    format!("e0000000-0000-0000-0000-{n:012}")
}

#[tokio::test]
async fn the_log_forgets_whole_finished_events_past_the_cut_off_and_keeps_the_rest() {
    let db = Db::new("webhook_log").await;
    db.exec(
        "INSERT INTO webhook_endpoints (id, url, events, secret_sealed) VALUES
           ('00000000-0000-0000-0000-000000000001', 'http://a.test/', '{*}', 's'),
           ('00000000-0000-0000-0000-000000000002', 'http://b.test/', '{*}', 's');",
    )
    .await;
    // Event 1 to endpoint 1: delivered 40 days ago and redelivered twice since (35 and 33
    // days ago): all three go together. Alone, the original's deletion would leave two
    // redeliveries both claiming to be the first, which the schema refuses.
    let mut sql = delivery(&id(1), 1, &event(1), "delivered", 40.0, None);
    sql += &delivery(&id(2), 1, &event(1), "delivered", 35.0, Some(&id(1)));
    sql += &delivery(&id(3), 1, &event(1), "failed", 33.0, Some(&id(1)));
    // Event 1 to endpoint 2, delivered yesterday: stays.
    sql += &delivery(&id(4), 2, &event(1), "delivered", 1.0, None);
    // Event 2: failed 40 days ago, redelivered yesterday: both stay.
    sql += &delivery(&id(5), 1, &event(2), "failed", 40.0, None);
    sql += &delivery(&id(6), 1, &event(2), "delivered", 1.0, Some(&id(5)));
    // Event 3: skipped 31 days ago (a disabled endpoint): goes.
    sql += &delivery(&id(7), 1, &event(3), "skipped", 31.0, None);
    // Event 4: still being retried, created 40 days ago: stays.
    sql += &delivery(&id(8), 1, &event(4), "pending", 40.0, None);
    // Event 5: delivered an hour ago: stays.
    sql += &delivery(&id(9), 1, &event(5), "delivered", 1.0 / 24.0, None);
    db.exec(&sql).await;
    // Many old groups that must stay (failed 60 days ago, a redelivery still pending),
    // older than many old groups that may go (delivered 45 days ago).
    db.exec(&format!(
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, body, status,
                                         attempts, redelivery_of, created_at, finished_at)
         SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000001', gen_random_uuid(),
                'stuck', '{{}}', 'failed', 8, NULL, now() - interval '61 days',
                now() - interval '60 days'
         FROM generate_series(1, {STUCK});
         INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, body, status,
                                         attempts, redelivery_of, created_at)
         SELECT gen_random_uuid(), endpoint_id, event_id, 'stuck', '{{}}', 'pending', 0, id,
                now()
         FROM webhook_deliveries WHERE event_type = 'stuck';
         INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, body, status,
                                         attempts, created_at, finished_at)
         SELECT gen_random_uuid(), '00000000-0000-0000-0000-000000000002', gen_random_uuid(),
                'old', '{{}}', 'delivered', 1, now() - interval '46 days',
                now() - interval '45 days'
         FROM generate_series(1, {OLD});
         INSERT INTO webhook_attempts (delivery_id, number, status_code, latency_ms)
         SELECT id, 1, 200, 5 FROM webhook_deliveries WHERE event_type = 'old';"
    ))
    .await;
    let before = db.count("SELECT count(*) FROM webhook_deliveries").await;

    let mut conn = db.store.pool.acquire().await.unwrap();
    let mut gone = 0;
    let mut batches = 0;
    loop {
        let n = prune_finished(&mut conn, KEEP, BATCH).await.unwrap();
        if n == 0 {
            break;
        }
        gone += n as i64;
        batches += 1;
        assert!(batches < 10, "the pruning does not end");
    }
    drop(conn);
    println!("forgot {gone} of {before} deliveries in {batches} batches of {BATCH}");

    // Exactly what may go went: event 1 to endpoint 1 (3), event 3 (1), the old ones.
    assert_eq!(gone, 3 + 1 + OLD);
    for gone in [1, 2, 3, 7] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM webhook_deliveries WHERE id = '{}'",
                id(gone)
            ))
            .await,
            0,
            "delivery {gone} is still logged"
        );
    }
    for kept in [4, 5, 6, 8, 9] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM webhook_deliveries WHERE id = '{}'",
                id(kept)
            ))
            .await,
            1,
            "delivery {kept} was forgotten"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM webhook_deliveries WHERE event_type = 'stuck'")
            .await,
        2 * STUCK,
        "a group with a pending redelivery lost a delivery"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM webhook_deliveries WHERE event_type = 'old'")
            .await,
        0
    );
    // Their attempts went with them; the kept ones' stayed.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM webhook_attempts a
             WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.id = a.delivery_id)"
        )
        .await,
        0
    );
    assert_eq!(db.count("SELECT count(*) FROM webhook_attempts").await, 5);
    db.drop().await;
}
