//! `berth webhooks …`: signed webhook endpoints, their secrets, deliveries and redelivery.
//! A secret is printed once, when it is made; it never goes through argv.

use super::args::{CreateWebhook, UpdateWebhook, WebhooksCommand};
use super::client::{CliError, Client, decode, segment};
use super::render::{kv, opt_time, print_json, short, table, time};
use berth_contracts::webhook::{CreatedWebhook, RotatedSecret, Webhook, WebhookDelivery};
use serde_json::{Value, json};
use std::process::ExitCode;

fn details(w: &Webhook) -> String {
    kv(&[
        ("id", w.id.to_string()),
        ("url", w.url.clone()),
        ("events", w.events.join(" ")),
        (
            "client",
            w.client.map(|c| c.to_string()).unwrap_or_default(),
        ),
        ("description", w.description.clone()),
        ("enabled", w.enabled.to_string()),
        ("disabled", w.disabled_reason.clone().unwrap_or_default()),
        ("old secret until", opt_time(&w.previous_secret_until)),
        ("created", time(&w.created_at)),
    ])
}

fn path(id: &str) -> String {
    format!("/webhooks/{}", segment(id.trim()))
}

pub(crate) async fn webhooks(
    client: &Client,
    json: bool,
    c: WebhooksCommand,
) -> Result<ExitCode, CliError> {
    let v: Value = match c {
        WebhooksCommand::Create(CreateWebhook {
            url,
            events,
            client: for_client,
            description,
        }) => {
            let mut body = json!({"url": url, "events": events, "description": description});
            if let Some(c) = for_client {
                body["client"] = json!(c);
            }
            let v = client.post("/webhooks", &body).await?;
            if !json {
                let made: CreatedWebhook = decode("webhook", v)?;
                print!("{}", details(&made.webhook));
                println!("secret  {}", made.secret);
                eprintln!("keep the secret now: it is not shown again");
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        WebhooksCommand::List => {
            let v = client.get("/webhooks", &[]).await?;
            if !json {
                let list: Vec<Webhook> = decode("webhooks", v)?;
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|w| {
                        vec![
                            w.id.to_string(),
                            short(&w.url, 50),
                            short(&w.events.join(" "), 40),
                            if w.enabled { "yes" } else { "no" }.into(),
                        ]
                    })
                    .collect();
                print!("{}", table(&["ID", "URL", "EVENTS", "ENABLED"], &rows));
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        WebhooksCommand::Show { id } => client.get(&path(&id), &[]).await?,
        WebhooksCommand::Update(UpdateWebhook {
            id,
            url,
            events,
            enable,
            disable,
        }) => {
            let mut body = json!({});
            if let Some(u) = url {
                body["url"] = json!(u);
            }
            if !events.is_empty() {
                body["events"] = json!(events);
            }
            if enable || disable {
                body["enabled"] = json!(enable);
            }
            client.patch(&path(&id), &body).await?
        }
        WebhooksCommand::Delete { id } => {
            client.delete(&path(&id)).await?;
            println!("webhook {} removed", id.trim());
            return Ok(ExitCode::SUCCESS);
        }
        WebhooksCommand::RotateSecret { id } => {
            let v = client
                .post(&format!("{}/rotate-secret", path(&id)), &json!({}))
                .await?;
            if !json {
                let r: RotatedSecret = decode("rotated secret", v)?;
                println!("secret           {}", r.secret);
                println!("old secret until {}", time(&r.previous_secret_until));
                eprintln!("keep the secret now: it is not shown again");
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        WebhooksCommand::Deliveries { id, limit } => {
            let v = client
                .get(
                    &format!("{}/deliveries", path(&id)),
                    &[("limit", limit.to_string())],
                )
                .await?;
            if !json {
                let list: Vec<WebhookDelivery> = decode("deliveries", v)?;
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|d| {
                        let last = d.attempts.last();
                        vec![
                            d.id.to_string(),
                            d.event_type.clone(),
                            format!("{:?}", d.status).to_lowercase(),
                            d.attempts.len().to_string(),
                            last.and_then(|a| a.status_code)
                                .map(|s| s.to_string())
                                .unwrap_or_default(),
                            short(last.and_then(|a| a.error.as_deref()).unwrap_or(""), 40),
                            time(&d.created_at),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "ID", "EVENT", "STATUS", "ATTEMPTS", "LAST", "ERROR", "CREATED"
                        ],
                        &rows
                    )
                );
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        WebhooksCommand::Redeliver { delivery } => {
            client
                .post(
                    &format!("/webhook-deliveries/{}/redeliver", segment(delivery.trim())),
                    &json!({}),
                )
                .await?
        }
    };
    if json {
        print_json(&v);
    } else if v.get("event_id").is_some() {
        let d: WebhookDelivery = decode("delivery", v)?;
        println!("delivery {} queued ({})", d.id, d.event_type);
    } else {
        print!("{}", details(&decode("webhook", v)?));
    }
    Ok(ExitCode::SUCCESS)
}
