//! `berth dead-letters …`: steps that failed for good: list, show, replay, discard.

use super::args::DeadLettersCommand;
use super::client::{CliError, Client, decode, usage};
use super::render::{dead_letter_details, print_json, short, table, time};
use super::tasks::queued;
use berth_contracts::{DeadLetter, Page, Task};
use serde_json::json;
use std::process::ExitCode;
use uuid::Uuid;

fn dead_letter_id(id: &str) -> Result<Uuid, CliError> {
    Uuid::parse_str(id.trim())
        .map_err(|_| usage(format!("`{id}` is not a dead letter id (a UUID)")))
}

pub(crate) async fn dead_letters(
    client: &Client,
    json: bool,
    c: DeadLettersCommand,
) -> Result<ExitCode, CliError> {
    match c {
        DeadLettersCommand::List { limit, offset } => {
            let v = client
                .get(
                    "/dead-letters",
                    &[("limit", limit.to_string()), ("offset", offset.to_string())],
                )
                .await?;
            if json {
                print_json(&v);
            } else {
                let page: Page<DeadLetter> = decode("dead letters", v)?;
                let rows: Vec<Vec<String>> = page
                    .items
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.to_string(),
                            d.task_id.to_string(),
                            d.routing_key.clone(),
                            d.history.len().to_string(),
                            time(&d.created_at),
                            if d.replayed_at.is_some() { "yes" } else { "no" }.into(),
                            short(&d.error, 60),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "ID",
                            "TASK",
                            "ROUTING KEY",
                            "ATTEMPTS",
                            "CREATED",
                            "REPLAYED",
                            "ERROR"
                        ],
                        &rows
                    )
                );
                let shown = page.items.len() as i64;
                if page.total > page.offset + shown {
                    eprintln!(
                        "({shown} of {} shown; more with --offset {})",
                        page.total,
                        page.offset + shown
                    );
                }
            }
        }
        DeadLettersCommand::Show { id } => {
            let id = dead_letter_id(&id)?;
            let v = client.get(&format!("/dead-letters/{id}"), &[]).await?;
            if json {
                print_json(&v);
            } else {
                print!("{}", dead_letter_details(&decode("dead letter", v)?));
            }
        }
        DeadLettersCommand::Replay { id, follow } => {
            let id = dead_letter_id(&id)?;
            let v = client
                .post(&format!("/dead-letters/{id}/replay"), &json!({}))
                .await?;
            if follow {
                return queued(
                    client,
                    json,
                    v,
                    true,
                    &format!("queued again (dead letter {id})"),
                )
                .await;
            }
            if json {
                print_json(&v);
            } else {
                let t: Task = decode("task", v)?;
                println!(
                    "dead letter {id} replayed: task {} is {}; follow it with `berth tasks log {} --follow`",
                    t.id,
                    t.status.as_str(),
                    t.id
                );
            }
        }
        DeadLettersCommand::Discard { id } => {
            let id = dead_letter_id(&id)?;
            client.delete(&format!("/dead-letters/{id}")).await?;
            if json {
                print_json(&json!({"discarded": id}));
            } else {
                println!("dead letter {id} discarded");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
