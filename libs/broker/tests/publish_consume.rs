//! Publisher confirms and the generic consume loop, against the real broker.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_broker::{
    BrokerError, CancellationToken, HandlerError, MessageHeaders, Publisher, consume, topology,
};
use common::TestVhost;

const N: usize = 200;

async fn publish_task(publisher: &Publisher, i: usize) -> Result<(), BrokerError> {
    let body = serde_json::to_vec(&serde_json::json!({ "n": i })).expect("json");
    publisher
        .publish(
            topology::TASKS_EXCHANGE,
            topology::TASKS_ROUTING_KEY,
            &format!("m{i}"),
            &body,
            MessageHeaders::for_task(format!("t{i}")),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_publishes_from_many_tasks_are_all_consumed() {
    let vhost = TestVhost::new().await;
    let broker = vhost.broker().await;
    topology::declare_core(&broker.channel().await.unwrap())
        .await
        .unwrap();
    let publisher = Publisher::new(broker.clone());

    // Many publishes in flight at once, from many tasks, on the shared channel.
    let mut tasks = Vec::new();
    for t in 0..20 {
        let p = publisher.clone();
        tasks.push(tokio::spawn(async move {
            for i in (t..N).step_by(20) {
                publish_task(&p, i).await.expect("confirmed publish");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        broker.queue_depth(topology::TASKS_QUEUE).await.unwrap(),
        N as u32
    );

    let seen = Arc::new(Mutex::new(HashSet::new()));
    let shutdown = CancellationToken::new();
    let consumer = {
        let (broker, seen, shutdown) = (broker.clone(), seen.clone(), shutdown.clone());
        tokio::spawn(async move {
            consume(&broker, topology::TASKS_QUEUE, 8, shutdown, move |d| {
                let seen = seen.clone();
                async move {
                    assert_eq!(d.headers.attempt, 1);
                    assert!(d.headers.task_id.is_some());
                    seen.lock().unwrap().insert(d.message_id.unwrap());
                    Ok(())
                }
            })
            .await
        })
    };
    for _ in 0..1500 {
        if seen.lock().unwrap().len() == N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    consumer.await.unwrap().expect("consume ends cleanly");
    assert_eq!(seen.lock().unwrap().len(), N);
    assert_eq!(broker.queue_depth(topology::TASKS_QUEUE).await.unwrap(), 0);
}

#[tokio::test]
async fn unroutable_and_missing_exchange_publishes_fail_and_the_publisher_recovers() {
    let vhost = TestVhost::new().await;
    let broker = vhost.broker().await;
    topology::declare_core(&broker.channel().await.unwrap())
        .await
        .unwrap();
    let publisher = Publisher::new(broker.clone());

    let err = publisher
        .publish(
            topology::WORK_EXCHANGE,
            "nobody.nowhere",
            "m1",
            b"{}",
            MessageHeaders::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Unroutable { .. }), "{err}");

    // A missing exchange closes the channel; the error says so and the next publish works.
    let err = publisher
        .publish(
            "no.such.exchange",
            "x",
            "m2",
            b"{}",
            MessageHeaders::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::Amqp(_)), "{err}");
    publish_task(&publisher, 1)
        .await
        .expect("publisher recovered");
    assert_eq!(broker.queue_depth(topology::TASKS_QUEUE).await.unwrap(), 1);

    let err = broker.queue_depth("no.such.queue").await.unwrap_err();
    assert!(matches!(err, BrokerError::Amqp(_)), "{err}");
}

#[tokio::test]
async fn retry_requeues_and_reject_drops() {
    let vhost = TestVhost::new().await;
    let broker = vhost.broker().await;
    topology::declare_core(&broker.channel().await.unwrap())
        .await
        .unwrap();
    let publisher = Publisher::new(broker.clone());
    publish_task(&publisher, 1).await.unwrap(); // retried once, then acked
    publish_task(&publisher, 2).await.unwrap(); // rejected

    let calls = Arc::new(Mutex::new(Vec::new()));
    let shutdown = CancellationToken::new();
    let mut opts = berth_broker::ConsumeOptions::new(
        vec![topology::TASKS_QUEUE.into()],
        2,
        topology::Topology::core(),
    );
    opts.requeue_delay = Duration::from_millis(50);
    let consumer = {
        let (broker, calls, shutdown) = (broker.clone(), calls.clone(), shutdown.clone());
        tokio::spawn(async move {
            berth_broker::consume_with(&broker, opts, shutdown, move |d| {
                let calls = calls.clone();
                async move {
                    let id = d.message_id.unwrap();
                    calls.lock().unwrap().push((id.clone(), d.redelivered));
                    // Quorum queues count deliveries that were not acked.
                    assert_eq!(d.delivery_count.is_some(), d.redelivered);
                    match (id.as_str(), d.redelivered) {
                        ("m1", false) => Err(HandlerError::Retry("not yet".into())),
                        ("m2", _) => Err(HandlerError::Reject("never".into())),
                        _ => Ok(()),
                    }
                }
            })
            .await
        })
    };
    for _ in 0..1500 {
        if calls.lock().unwrap().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give a wrongly requeued m2 the chance to show up again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    consumer.await.unwrap().unwrap();

    let mut calls = calls.lock().unwrap().clone();
    calls.sort();
    assert_eq!(
        calls,
        vec![
            ("m1".to_string(), false),
            ("m1".to_string(), true),
            ("m2".to_string(), false)
        ]
    );
    assert_eq!(broker.queue_depth(topology::TASKS_QUEUE).await.unwrap(), 0);
}

#[tokio::test]
async fn consumers_and_publishers_survive_a_lost_connection() {
    let vhost = TestVhost::new().await;
    let broker = vhost.broker().await;
    topology::declare_core(&broker.channel().await.unwrap())
        .await
        .unwrap();
    let publisher = Publisher::new(broker.clone());

    let seen = Arc::new(Mutex::new(HashSet::new()));
    let shutdown = CancellationToken::new();
    let consumer = {
        let (broker, seen, shutdown) = (broker.clone(), seen.clone(), shutdown.clone());
        tokio::spawn(async move {
            consume(&broker, topology::TASKS_QUEUE, 4, shutdown, move |d| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().insert(d.message_id.unwrap());
                    Ok(())
                }
            })
            .await
        })
    };
    publish_task(&publisher, 1).await.unwrap();
    common::wait_for_consumers(&broker, topology::TASKS_QUEUE, 1).await;

    // The management API lists a connection only once its stats are in; wait for it.
    let mut killed = 0;
    for _ in 0..300 {
        killed = vhost.kill_connections().await;
        if killed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(killed > 0, "no connection to kill");
    // Consuming again means the consume loop noticed and reconnected.
    common::wait_for_consumers(&broker, topology::TASKS_QUEUE, 1).await;

    // The publisher reconnects on its own; the consumer resumes.
    publish_task(&publisher, 2)
        .await
        .expect("publish after the connection was lost");
    for _ in 0..1500 {
        if seen.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen.contains("m1") && seen.contains("m2"), "{seen:?}");
}

#[tokio::test]
async fn a_step_published_before_any_worker_waits_in_its_declared_queue() {
    let vhost = TestVhost::new().await;
    let publisher = vhost.broker().await.publisher().await.expect("publisher");
    publisher
        .declare_work_queue("db", "server_db1")
        .await
        .unwrap();
    publisher
        .publish(
            topology::WORK_EXCHANGE,
            "db.server_db1",
            "s1",
            b"{}",
            MessageHeaders::default(),
        )
        .await
        .expect("routed to the declared work queue");
    assert_eq!(
        publisher.queue_depth("work.db.server_db1").await.unwrap(),
        1
    );
}

#[tokio::test]
async fn an_unreachable_broker_fails_fast_or_waits_for_cancellation() {
    // Nothing listens on port 1.
    let url = "amqp://guest:guest@127.0.0.1:1/%2f";
    let broker = berth_broker::Broker::new(url);
    assert!(matches!(broker.channel().await, Err(BrokerError::Amqp(_))));
    assert!(broker.publisher().await.is_err());

    let shutdown = CancellationToken::new();
    let connecting = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move { berth_broker::Broker::connect(url, &shutdown).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel();
    assert!(matches!(
        connecting.await.unwrap(),
        Err(BrokerError::Cancelled)
    ));

    let bad = berth_broker::Broker::new("http://nope");
    assert!(matches!(
        bad.channel().await,
        Err(BrokerError::InvalidUrl(_))
    ));
    let err = berth_broker::Broker::connect("http://nope", &CancellationToken::new()).await;
    assert!(matches!(err, Err(BrokerError::InvalidUrl(_))));
}

#[tokio::test]
async fn a_queue_deleted_under_a_consumer_is_declared_and_consumed_again() {
    let vhost = TestVhost::new().await;
    let broker = vhost.broker().await;
    let publisher = broker.publisher().await.unwrap();
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let shutdown = CancellationToken::new();
    let opts = berth_broker::ConsumeOptions::new(
        vec![topology::TASKS_QUEUE.into(), topology::EVENTS_QUEUE.into()],
        4,
        topology::Topology::core(),
    );
    let consumer = {
        let (broker, seen, shutdown) = (broker.clone(), seen.clone(), shutdown.clone());
        tokio::spawn(async move {
            berth_broker::consume_with(&broker, opts, shutdown, move |d| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().insert(d.message_id.unwrap());
                    Ok(())
                }
            })
            .await
        })
    };
    common::wait_for_consumers(&broker, topology::EVENTS_QUEUE, 1).await;
    broker
        .channel()
        .await
        .unwrap()
        .queue_delete(
            topology::EVENTS_QUEUE.into(),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    // Back: the loop noticed the cancelled consumer, declared the queue and consumes it.
    common::wait_for_consumers(&broker, topology::EVENTS_QUEUE, 1).await;
    publisher
        .publish(
            topology::EVENTS_EXCHANGE,
            topology::EVENTS_ROUTING_KEY,
            "e1",
            b"{}",
            MessageHeaders::default(),
        )
        .await
        .unwrap();
    publish_task(&publisher, 1).await.unwrap();
    for _ in 0..1500 {
        if seen.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    consumer.await.unwrap().unwrap();
    assert_eq!(seen.lock().unwrap().len(), 2);
}
