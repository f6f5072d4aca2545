//! The bounded cron history against a real PostgreSQL (BERTH_TEST_DATABASE_URL, default
//! the local one): thousands of cron tasks with their steps, logs, secrets, outbox rows and
//! idempotency keys; what the pruning keeps (per site: every failed cron, the newest N
//! successful, the site's last cron, a task a retry names, a task with an unsent message,
//! every unfinished task and every other task type) and that nothing of what it deleted
//! is left behind; a task another transaction holds is skipped, not waited for.

mod common;

use berth_store::cron::prune_cron_batch;
use common::Db;
use uuid::Uuid;

const KEEP: u32 = 10;
/// Successful cron runs of site a: far more than a batch.
const MANY: i64 = 2500;

/// Cron tasks of `site` with `status`, `n` of them, the newest `offset_min` minutes ago and
/// one a minute before that; each with a step, two log lines, a secret, a sent outbox row
/// and an idempotency key: what a real run leaves, and more.
fn crons(site: &str, status: &str, n: i64, offset_min: i64, tag: &str) -> String {
    format!(
        "INSERT INTO tasks (id, type, target, target_kind, status, trace_id, traceparent,
                            requested_by, created_at, started_at, finished_at, args)
         SELECT gen_random_uuid(), 'cron', '{site}', 'site', '{status}', '', '', 'scheduler',
                now() - make_interval(mins => ({offset_min} + i)::int),
                now() - make_interval(mins => ({offset_min} + i)::int),
                now() - make_interval(mins => ({offset_min} + i)::int),
                jsonb_build_object('tag', '{tag}')
         FROM generate_series(1, {n}) AS i;
         INSERT INTO steps (id, task_id, position, service, server, action, status)
         SELECT gen_random_uuid(), id, 1, 'http', 'server_master', 'site-cron', 'success'
         FROM tasks WHERE args->>'tag' = '{tag}';
         INSERT INTO task_log (task_id, level, message)
         SELECT id, 'info', m FROM tasks, unnest(ARRAY['drush cron ran', 'finished']) AS m
         WHERE args->>'tag' = '{tag}';
         INSERT INTO task_secrets (task_id, name, sealed)
         SELECT id, 'x', 'sealed' FROM tasks WHERE args->>'tag' = '{tag}';
         INSERT INTO outbox (exchange, routing_key, message_id, payload, task_id, sent_at)
         SELECT 'berth.events', 'task.finished', id::text, '{{}}', id, now()
         FROM tasks WHERE args->>'tag' = '{tag}';
         INSERT INTO idempotency_keys (token_id, key, request_hash, task_id)
         SELECT gen_random_uuid(), id::text, 'h', id FROM tasks WHERE args->>'tag' = '{tag}';"
    )
}

#[tokio::test]
async fn pruning_keeps_failures_and_the_newest_successes_and_leaves_nothing_behind() {
    let db = Db::new("cron").await;
    db.exec(
        "INSERT INTO servers (name, host) VALUES ('server_master', 'localhost');
         INSERT INTO platforms (name, root, web_server) VALUES ('platform_x', '/p', 'server_master');
         INSERT INTO sites (uri, platform, db_server, profile, status, db_name, db_user,
                            db_password_sealed, client_id)
         SELECT u, 'platform_x', 'server_master', 'standard', 'enabled', u, u, 's',
                (SELECT id FROM clients WHERE name = 'default')
         FROM unnest(ARRAY['a.test', 'b.test']) AS u;",
    )
    .await;
    // Site a: many successes (the newest an hour ago), failures older than all of them,
    // one run going and one waiting; site b: fewer successes than kept.
    db.exec(&crons("a.test", "success", MANY, 60, "a-ok")).await;
    db.exec(&crons("a.test", "warning", 3, 30, "a-warn")).await;
    db.exec(&crons("a.test", "error", 5, 10_000, "a-err")).await;
    db.exec(&crons("a.test", "cancelled", 1, 20_000, "a-cancel"))
        .await;
    db.exec(&crons("a.test", "processing", 1, 0, "a-run")).await;
    db.exec(&crons("a.test", "queued", 1, -1, "a-queued")).await;
    db.exec(&crons("b.test", "success", 3, 60, "b-ok")).await;
    // An old verify of site a is not cron history.
    db.exec(
        "INSERT INTO tasks (id, type, target, target_kind, status, trace_id, traceparent,
                            requested_by, created_at)
         VALUES (gen_random_uuid(), 'verify', 'a.test', 'site', 'success', '', '', 't',
                 now() - interval '30 days')",
    )
    .await;
    // Old successes the pruning must keep: site a's last cron as the site shows it, one a
    // retry names, one whose message is not sent yet.
    let old = |rank: i64| {
        format!(
            "(SELECT id FROM tasks WHERE args->>'tag' = 'a-ok' ORDER BY created_at DESC
              OFFSET {rank} LIMIT 1)"
        )
    };
    db.exec(&format!(
        "UPDATE sites SET cron_last_task = {} WHERE uri = 'a.test';
         INSERT INTO tasks (id, type, target, target_kind, status, trace_id, traceparent,
                            requested_by, retry_of)
         VALUES (gen_random_uuid(), 'cron', 'a.test', 'site', 'error', '', '', 't', {});
         UPDATE outbox SET sent_at = NULL WHERE task_id = {};",
        old(100),
        old(200),
        old(300)
    ))
    .await;
    let kept_ids: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM tasks WHERE id IN ({}, {}, {})",
        old(100),
        old(200),
        old(300)
    )))
    .fetch_all(&db.store.pool)
    .await
    .unwrap();
    assert_eq!(kept_ids.len(), 3);
    let tasks_before = db.count("SELECT count(*) FROM tasks").await;
    let bytes_before = db
        .count("SELECT pg_total_relation_size('tasks') + pg_total_relation_size('steps') + pg_total_relation_size('task_log')")
        .await;

    // A task another transaction holds (the state service recording it) is skipped.
    let held: Uuid = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {}", old(500))))
        .fetch_one(&db.store.pool)
        .await
        .unwrap();
    let mut holder = db.store.pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM tasks WHERE id = $1 FOR UPDATE")
        .bind(held)
        .execute(&mut *holder)
        .await
        .unwrap();
    let mut tx = db.store.pool.begin().await.unwrap();
    let first = prune_cron_batch(&mut tx, KEEP, 100_000).await.unwrap();
    tx.commit().await.unwrap();
    let gone_now = MANY + 3 - i64::from(KEEP) - 3 - 1;
    assert_eq!(
        first.tasks as i64, gone_now,
        "all but the held one, in one batch"
    );
    assert_eq!(
        db.count(&format!("SELECT count(*) FROM tasks WHERE id = '{held}'"))
            .await,
        1
    );
    holder.rollback().await.unwrap();

    // The rest in batches: only the task that was held is left to go.
    let deleted = db.store.prune_cron_history(KEEP, 7).await.unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(db.store.prune_cron_history(KEEP, 7).await.unwrap(), 0);

    // Kept: per site the newest KEEP successes (the warnings are the newest of a), every
    // failure, what runs or waits, and the three named ones.
    let kept = |tag: &str| {
        let sql = format!("SELECT count(*) FROM tasks WHERE args->>'tag' = '{tag}'");
        let db = &db;
        async move { db.count(&sql).await }
    };
    assert_eq!(kept("a-warn").await, 3);
    assert_eq!(kept("a-ok").await, i64::from(KEEP) - 3 + 3);
    assert_eq!(kept("a-err").await, 5);
    assert_eq!(kept("a-cancel").await, 1);
    assert_eq!(kept("a-run").await, 1);
    assert_eq!(kept("a-queued").await, 1);
    assert_eq!(kept("b-ok").await, 3);
    for id in &kept_ids {
        assert_eq!(
            db.count(&format!("SELECT count(*) FROM tasks WHERE id = '{id}'"))
                .await,
            1,
            "{id}"
        );
    }
    // The newest successes are the ones kept.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM tasks WHERE args->>'tag' = 'a-ok'
             AND created_at > now() - interval '68 minutes'"
        )
        .await,
        i64::from(KEEP) - 3
    );
    assert_eq!(
        db.count("SELECT count(*) FROM tasks WHERE type = 'verify'")
            .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM tasks").await,
        tasks_before - gone_now - 1
    );
    // Nothing of a deleted task is left.
    for table in [
        "steps",
        "task_log",
        "task_secrets",
        "outbox",
        "idempotency_keys",
    ] {
        assert_eq!(
            db.count(&format!(
                "SELECT count(*) FROM {table} x WHERE NOT EXISTS
                 (SELECT 1 FROM tasks t WHERE t.id = x.task_id)"
            ))
            .await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM task_log").await,
        2 * (db
            .count("SELECT count(*) FROM tasks WHERE args ? 'tag'")
            .await)
    );
    eprintln!(
        "{tasks_before} tasks, {bytes_before} bytes of tasks+steps+task_log before; {} tasks after",
        db.count("SELECT count(*) FROM tasks").await
    );
    db.drop().await;
}
