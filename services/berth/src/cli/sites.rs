//! `berth sites …`: domains installed on a platform (Aegir's site contexts).

use super::args::{CreateSite, SitesCommand};
use super::client::{CliError, Client, bare, decode, segment};
use super::render::{packages_table, print_json, site_details, table, time};
use super::schedules::{retention_query, retention_spec, retention_table};
use super::tasks::{created, exit_for, follow_log, queued};
use berth_contracts::schedule::RetentionPreview;
use berth_contracts::{Package, Site, Task};
use serde_json::{Value, json};
use std::process::ExitCode;

fn new_site_body(c: &CreateSite) -> Value {
    let mut body = json!({
        "uri": bare(&c.uri), "platform": bare(&c.platform),
        "aliases": c.aliases, "redirection": c.redirection,
    });
    let opt = [
        ("db_server", c.db_server.as_deref().map(bare)),
        ("profile", c.profile.as_deref()),
        ("language", c.language.as_deref()),
        ("client", c.client.as_deref()),
        ("client_email", c.client_email.as_deref()),
    ];
    for (k, v) in opt {
        if let Some(v) = v {
            body[k] = v.into();
        }
    }
    body
}

pub(crate) async fn sites(
    client: &Client,
    json: bool,
    c: SitesCommand,
) -> Result<ExitCode, CliError> {
    let one = |uri: &str, what: &str| format!("/sites/{}{what}", segment(bare(uri)));
    let v = match c {
        SitesCommand::List {
            platform,
            status,
            client: owner,
            limit,
            offset,
        } => {
            let mut q = Vec::new();
            if let Some(p) = platform {
                q.push(("platform", bare(&p).to_string()));
            }
            if let Some(s) = status {
                q.push(("status", s));
            }
            if let Some(c) = owner {
                q.push(("client", c));
            }
            if let Some(n) = limit {
                q.push(("limit", n.to_string()));
            }
            if let Some(n) = offset {
                q.push(("offset", n.to_string()));
            }
            let v = client.get("/sites", &q).await?;
            if !json {
                let list: Vec<Site> = decode("sites", v)?;
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|s| {
                        vec![
                            s.uri.clone(),
                            s.status.clone(),
                            s.platform.clone(),
                            s.profile.clone(),
                            s.aliases.join(","),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["URI", "STATUS", "PLATFORM", "PROFILE", "ALIASES"], &rows)
                );
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        SitesCommand::Show { uri } => client.get(&one(&uri, ""), &[]).await?,
        SitesCommand::Create(c) => {
            let v = client.post("/sites", &new_site_body(&c)).await?;
            let s: Site = decode("site", v.clone())?;
            return created(client, json, v, c.follow, site_details(&s)).await;
        }
        SitesCommand::Install { uri, follow } => {
            return install(client, json, bare(&uri), follow).await;
        }
        SitesCommand::Packages { uri } => {
            let v = client.get(&one(&uri, "/packages"), &[]).await?;
            if !json {
                print!(
                    "{}",
                    packages_table(&decode::<Vec<Package>>("packages", v)?)
                );
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        SitesCommand::Backups { uri } => {
            let v = client.get(&one(&uri, "/backups"), &[]).await?;
            if !json {
                let list: Vec<berth_contracts::Backup> = decode("backups", v)?;
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|b| {
                        let copies: Vec<&str> =
                            b.copies.iter().map(|c| c.target.as_str()).collect();
                        vec![
                            b.id.to_string(),
                            time(&b.created_at),
                            format!("{:.1} MB", b.size as f64 / 1e6),
                            b.description.clone(),
                            if copies.is_empty() {
                                "-".into()
                            } else {
                                copies.join(",")
                            },
                            b.verified_at
                                .map(|t| format!("verified by drill at {}", time(&t)))
                                .unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &["ID", "CREATED", "SIZE", "DESCRIPTION", "COPIES", "VERIFIED"],
                        &rows
                    )
                );
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        SitesCommand::Cron { uri, follow } => {
            let v = client
                .post(
                    "/tasks",
                    &json!({"type": "cron", "target": bare(&uri), "args": {}}),
                )
                .await?;
            return queued(client, json, v, follow, "queued").await;
        }
        SitesCommand::Retention { uri, rules } => {
            let v = client
                .get(&one(&uri, "/retention"), &retention_query(&rules))
                .await?;
            if !json {
                let p: RetentionPreview = decode("retention preview", v)?;
                print!("{}", retention_table(&p));
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        SitesCommand::Prune { uri, rules, follow } => {
            let v = client
                .post(
                    "/tasks",
                    &json!({"type": "prune", "target": bare(&uri), "args": retention_spec(&rules)?}),
                )
                .await?;
            return queued(client, json, v, follow, "queued").await;
        }
        SitesCommand::Drill {
            uri,
            backup,
            follow,
        } => {
            let args = match backup {
                Some(b) => json!({"backup": b}),
                None => json!({}),
            };
            let v = client
                .post(
                    "/tasks",
                    &json!({"type": "drill", "target": bare(&uri), "args": args}),
                )
                .await?;
            return queued(client, json, v, follow, "queued").await;
        }
        SitesCommand::Delete { uri } => {
            client.delete(&one(&uri, "")).await?;
            println!("site {} forgotten", bare(&uri));
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        print_json(&v);
    } else {
        print!("{}", site_details(&decode("site", v)?));
    }
    Ok(ExitCode::SUCCESS)
}

/// `provision-install`: saving a site already queued its install, so follow that one;
/// queue a new one only when none is waiting (a failed site installed again).
async fn install(
    client: &Client,
    json: bool,
    uri: &str,
    follow: bool,
) -> Result<ExitCode, CliError> {
    // The newest install task of the site: if it has not finished, it is the one to follow.
    let page = client
        .get(
            "/tasks",
            &[
                ("target", uri.to_string()),
                ("type", "install".into()),
                ("limit", "1".into()),
            ],
        )
        .await?;
    if let Some(t) = page["items"].as_array().and_then(|a| a.first()) {
        let task: Task = decode("task", t.clone())?;
        if !task.status.is_finished() {
            if !follow {
                println!("{}", task.id);
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!(
                "install task {} is {}; following it",
                task.id,
                task.status.as_str()
            );
            return Ok(exit_for(follow_log(client, task.id, json).await?));
        }
    }
    let v = client
        .post(
            "/tasks",
            &json!({"type": "install", "target": uri, "args": {}}),
        )
        .await?;
    queued(client, json, v, follow, "queued").await
}
