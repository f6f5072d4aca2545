//! A message the state service cannot record, however often it tries, must not loop for
//! ever and leave its task processing: after a bounded number of deliveries the task fails
//! with the reason, and the target's next task runs.

use berth_contracts::{StepStatus, TaskStatus};
use berth_tests::TASK_WAIT as WAIT;
use berth_tests::{World, WorldOptions};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_result_that_cannot_be_recorded_fails_its_task_instead_of_looping() {
    let w = World::with_server(WorldOptions::default()).await;
    // A module whose info file carries a NUL byte in its version: PostgreSQL refuses to
    // store it, every time the platform verify's result is recorded.
    let root = w.copy_fixture("drupal10", "platform_nul").unwrap();
    let info = root.join("modules/contrib/token/token.info.yml");
    let text = std::fs::read_to_string(&info).unwrap();
    let bad = text.replace("version: '8.x-1.14'", "version: '8.x-1.14\u{0}'");
    let bad = if bad == text {
        text.replace("8.x-1.14", "8.x-1.14\u{0}")
    } else {
        bad
    };
    assert_ne!(bad, text, "the fixture's version line was found");
    std::fs::write(&info, bad).unwrap();
    let r = w
        .post(
            "/api/v1/platforms",
            &json!({"name": "platform_nul", "root": root.display().to_string()}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let p: serde_json::Value = r.json().await.unwrap();
    let verify: uuid::Uuid = p["task"].as_str().unwrap().parse().unwrap();
    // A task queued behind it on the same platform still runs.
    let next = w
        .create_task("verify", "platform_nul", json!({}))
        .await
        .unwrap();
    let t = w.wait_finished(verify, WAIT).await.unwrap();
    assert_eq!(t.status, TaskStatus::Error, "{t:#?}");
    let log = berth_tests::log_of(&t);
    assert!(
        log.contains("could not record a message about this task"),
        "{log}"
    );
    // Its step ends with it rather than staying `running` in a finished task.
    for step in t.steps.as_ref().unwrap() {
        assert_eq!(step.status, StepStatus::Error, "{t:#?}");
        assert!(
            step.error
                .as_deref()
                .is_some_and(|e| e.contains("could not record")),
            "{step:#?}"
        );
    }
    assert_eq!(
        w.get_json("/api/v1/platforms/platform_nul").await["status"],
        "failed"
    );
    // The next task ran: the target was released, its step went to a worker after the
    // poisoned task had ended, and its result (the same unrecordable scan) was met by the same
    // bounded handling rather than left queued or cancelled unrun.
    let n = w.wait_finished(next.id, WAIT).await.unwrap();
    assert_eq!(n.status, TaskStatus::Error, "{n:#?}");
    let steps = n.steps.as_ref().unwrap();
    assert!(!steps.is_empty(), "the next task never got a step: {n:#?}");
    let started = n
        .started_at
        .unwrap_or_else(|| panic!("the next task never started: {n:#?}"));
    assert!(
        started >= t.finished_at.unwrap(),
        "the next task ran before the poisoned one had ended: {started} < {:?}",
        t.finished_at
    );
    let next_log = berth_tests::log_of(&n);
    assert!(
        next_log.contains("could not record a message about this task"),
        "the next task's own result reached the state service: {next_log}"
    );
    w.stop().await;
}
