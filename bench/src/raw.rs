//! The raw ceiling: what RabbitMQ and lapin do alone on this machine, with the same
//! guarantees the pipeline asks for (persistent messages on a durable quorum queue,
//! publisher confirms, manual acks), and nothing else.

use anyhow::{Context, Result, bail};
use berth_broker::lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use berth_broker::lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use berth_broker::lapin::{BasicProperties, Confirmation};
use berth_broker::{Broker, MessageHeaders};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::json;
use std::time::{Duration, Instant};
use uuid::Uuid;

const QUEUE: &str = "bench.raw";

#[derive(Debug, Clone, Copy)]
pub struct RawResult {
    pub messages: usize,
    /// First publish → last ack.
    pub secs: f64,
    /// First publish → last confirm.
    pub publish_secs: f64,
    pub body_bytes: usize,
}

impl RawResult {
    pub fn per_sec(&self) -> f64 {
        self.messages as f64 / self.secs
    }
}

/// Publishes `n` messages with up to `window` confirms outstanding, while a consumer with
/// `prefetch` acks each one; publisher and consumer have a connection each, as the
/// pipeline's services do. Runs in a vhost of its own, made (and removed) the way the test
/// harness makes a world's.
pub async fn ceiling(n: usize, prefetch: u16, window: usize) -> Result<RawResult> {
    let vhost = format!(
        "berth_bench_raw_{}",
        &Uuid::new_v4().simple().to_string()[..12]
    );
    let mgmt = berth_tests::rabbit_management();
    let http = reqwest::Client::new();
    http.put(format!("{mgmt}/api/vhosts/{vhost}"))
        .send()
        .await
        .context("RabbitMQ management API")?
        .error_for_status()?;
    let vhost_url = format!("{mgmt}/api/vhosts/{vhost}");
    let result = async {
        http.put(format!("{mgmt}/api/permissions/{vhost}/guest"))
            .json(&json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await?
            .error_for_status()?;
        let url = format!("{}/{vhost}", berth_tests::amqp_base());
        let consuming = Broker::new(&url);
        let publishing = Broker::new(&url);
        let result = run(&consuming, &publishing, n, prefetch, window).await;
        consuming.close().await;
        publishing.close().await;
        result
    }
    .await;
    let _ = http.delete(vhost_url).send().await;
    result
}

async fn run(
    consuming: &Broker,
    publishing: &Broker,
    n: usize,
    prefetch: u16,
    window: usize,
) -> Result<RawResult> {
    let consumer_ch = consuming.channel().await?;
    let ch = &consumer_ch;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    ch.queue_declare(QUEUE.into(), QueueDeclareOptions::durable(), args)
        .await
        .context("declare the raw queue")?;
    ch.basic_qos(prefetch, BasicQosOptions { global: false })
        .await?;
    let mut consumer = ch
        .basic_consume(
            QUEUE.into(),
            ShortString::default(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let acking = tokio::spawn(async move {
        let mut acked = 0;
        while acked < n {
            let Some(delivery) = consumer.next().await else {
                bail!("raw consumer cancelled after {acked} of {n} messages");
            };
            delivery?.ack(BasicAckOptions::default()).await?;
            acked += 1;
        }
        Ok(Instant::now())
    });

    let ch = publishing.channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let body = serde_json::to_vec(&step_command_like())?;
    let mut pending = FuturesUnordered::new();
    let start = Instant::now();
    for i in 0..n {
        if pending.len() >= window {
            confirmed(pending.next().await)?;
        }
        let props = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(format!("raw-{i}")))
            .with_headers(
                MessageHeaders::for_task(Uuid::now_v7())
                    .with_traceparent(TRACEPARENT)
                    .to_table(),
            );
        let confirm = ch
            .basic_publish(
                "".into(),
                QUEUE.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &body,
                props,
            )
            .await?;
        pending.push(confirm);
    }
    while !pending.is_empty() {
        confirmed(pending.next().await)?;
    }
    let publish_secs = start.elapsed().as_secs_f64();
    let last_ack = tokio::time::timeout(Duration::from_secs(120), acking)
        .await
        .context("the raw consumer did not get every message within 120 s")???;
    let _ = ch.close(200, "OK".into()).await;
    let _ = consumer_ch.close(200, "OK".into()).await;
    Ok(RawResult {
        messages: n,
        secs: last_ack.duration_since(start).as_secs_f64(),
        publish_secs,
        body_bytes: body.len(),
    })
}

fn confirmed(c: Option<berth_broker::lapin::Result<Confirmation>>) -> Result<()> {
    match c.context("a confirm went missing")?? {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) => bail!("raw message returned: {returned:?}"),
        Confirmation::Nack(_) => bail!("raw message nacked"),
        Confirmation::NotRequested => bail!("the raw channel is not in confirm mode"),
    }
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A body the size of a step command, the pipeline's largest message.
fn step_command_like() -> serde_json::Value {
    json!({
        "task_id": Uuid::now_v7(),
        "step_id": Uuid::now_v7(),
        "task_type": "noop",
        "target": "server_bench00examplecom",
        "service": "http",
        "server": "server_bench00examplecom",
        "action": "noop",
        "phase": "run",
        "args": {},
        "sealed": null
    })
}
