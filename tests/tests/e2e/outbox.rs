//! The outbox keeps unsent rows and recent sent ones, and prunes old sent ones.

use berth_store::outbox::{self, OutboxMessage};
use berth_tests::{World, WorldOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_only_rows_sent_long_ago() {
    let w = World::start_with(WorldOptions {
        workers: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut conn = w.store.pool.acquire().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let row = outbox::enqueue(
            &mut conn,
            OutboxMessage {
                exchange: "berth.nowhere",
                routing_key: "x",
                message_id: format!("m{i}"),
                payload: json!({}),
                traceparent: "",
                attempt: 1,
                task_id: None,
            },
        )
        .await
        .unwrap();
        ids.push(row.id);
    }
    // Row 0: sent two hours ago; row 1: sent just now; row 2: never sent.
    sqlx::query("UPDATE outbox SET sent_at = now() - interval '2 hours' WHERE id = $1")
        .bind(ids[0])
        .execute(&mut *conn)
        .await
        .unwrap();
    outbox::mark_sent(&mut *conn, &ids[1..2]).await.unwrap();
    assert_eq!(outbox::prune(&mut conn, 3600).await.unwrap(), 1);
    let left: Vec<(i64,)> = sqlx::query_as("SELECT id FROM outbox ORDER BY id")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(left, vec![(ids[1],), (ids[2],)]);
    drop(conn);
    w.stop().await;
}
