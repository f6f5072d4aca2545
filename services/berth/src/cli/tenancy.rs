//! `berth clients …` (tenants, their quotas and usage) and `berth tokens …` (scoped tokens
//! through the API: create, list, revoke; the value is printed once).

use super::args::{ClientsCommand, CreateClient, CreateToken, TokensCommand};
use super::client::{CliError, Client, decode, segment};
use super::render::{print_json, table, time};
use berth_contracts::{ApiToken, Client as Tenant, CreatedToken};
use serde_json::{Map, Value, json};
use std::process::ExitCode;

fn limit(v: Option<i64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn details(c: &Tenant) -> String {
    let rows = [
        ("name", c.name.clone()),
        ("email", c.email.clone().unwrap_or_default()),
        (
            "status",
            match &c.delete_sites_after {
                Some(at) => format!("{} (its sites are deleted after {})", c.status, time(at)),
                None => c.status.clone(),
            },
        ),
        (
            "reference",
            match (&c.storefront, &c.external_ref) {
                (Some(s), Some(r)) => format!("{s}:{r}"),
                _ => String::new(),
            },
        ),
        (
            "sites",
            format!(
                "{} of {}",
                c.usage.sites,
                limit(c.quotas.max_sites.map(i64::from))
            ),
        ),
        (
            "disk bytes",
            format!(
                "{} of {} ({} sites not measured)",
                c.usage.disk_bytes,
                limit(c.quotas.max_disk_bytes),
                c.usage.sites_unmeasured
            ),
        ),
        (
            "backup bytes",
            format!(
                "{} of {}",
                c.usage.backup_bytes,
                limit(c.quotas.max_backup_bytes)
            ),
        ),
        ("created", time(&c.created_at)),
    ];
    rows.iter().map(|(k, v)| format!("{k:<13} {v}\n")).collect()
}

fn quotas(sites: Option<i32>, disk: Option<i64>, backup: Option<i64>) -> Value {
    let mut q = Map::new();
    if let Some(v) = sites {
        q.insert("max_sites".into(), v.into());
    }
    if let Some(v) = disk {
        q.insert("max_disk_bytes".into(), v.into());
    }
    if let Some(v) = backup {
        q.insert("max_backup_bytes".into(), v.into());
    }
    Value::Object(q)
}

pub(crate) async fn clients(
    client: &Client,
    json: bool,
    c: ClientsCommand,
) -> Result<ExitCode, CliError> {
    let v = match c {
        ClientsCommand::Create(CreateClient {
            name,
            email,
            storefront,
            external_ref,
            max_sites,
            max_disk_bytes,
            max_backup_bytes,
        }) => {
            let mut body = json!({"name": name, "quotas": quotas(max_sites, max_disk_bytes, max_backup_bytes)});
            for (k, v) in [
                ("email", email),
                ("storefront", storefront),
                ("external_ref", external_ref),
            ] {
                if let Some(v) = v {
                    body[k] = v.into();
                }
            }
            client.post("/clients", &body).await?
        }
        ClientsCommand::List => {
            let v = client.get("/clients", &[]).await?;
            if !json {
                let list: Vec<Tenant> = decode("clients", v)?;
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.status.clone(),
                            format!(
                                "{}/{}",
                                c.usage.sites,
                                limit(c.quotas.max_sites.map(i64::from))
                            ),
                            c.usage.disk_bytes.to_string(),
                            c.usage.backup_bytes.to_string(),
                            c.email.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &["NAME", "STATUS", "SITES", "DISK", "BACKUPS", "EMAIL"],
                        &rows
                    )
                );
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        ClientsCommand::Show { name } => {
            client
                .get(&format!("/clients/{}", segment(&name)), &[])
                .await?
        }
        ClientsCommand::Change {
            name,
            new_name,
            email,
            max_sites,
            max_disk_bytes,
            max_backup_bytes,
        } => {
            let mut body = Map::new();
            if let Some(n) = new_name {
                body.insert("name".into(), n.into());
            }
            if let Some(e) = email {
                body.insert("email".into(), e.into());
            }
            // `none` lifts a quota.
            for (k, v) in [
                ("max_sites", max_sites),
                ("max_disk_bytes", max_disk_bytes),
                ("max_backup_bytes", max_backup_bytes),
            ] {
                match v.as_deref() {
                    None => {}
                    Some("none") => {
                        body.insert(k.into(), Value::Null);
                    }
                    Some(n) => {
                        let n: i64 = n.parse().map_err(|_| {
                            super::client::usage(format!(
                                "--{}: a number, or `none`",
                                k.replace('_', "-")
                            ))
                        })?;
                        body.insert(k.into(), n.into());
                    }
                }
            }
            client
                .patch(
                    &format!("/clients/{}", segment(&name)),
                    &Value::Object(body),
                )
                .await?
        }
        ClientsCommand::Suspend { name } => {
            return standing(client, json, &name, "suspend", json!({})).await;
        }
        ClientsCommand::Unsuspend { name } => {
            return standing(client, json, &name, "unsuspend", json!({})).await;
        }
        ClientsCommand::Cancel {
            name,
            grace_seconds,
        } => {
            let body = json!({ "grace_seconds": grace_seconds });
            return standing(client, json, &name, "cancel", body).await;
        }
    };
    if json {
        print_json(&v);
    } else {
        print!("{}", details(&decode("client", v)?));
    }
    Ok(ExitCode::SUCCESS)
}

/// Suspends, unsuspends or cancels: the client as it is now, and the tasks queued.
async fn standing(
    client: &Client,
    json: bool,
    name: &str,
    action: &str,
    body: Value,
) -> Result<ExitCode, CliError> {
    let v = client
        .post(&format!("/clients/{}/{action}", segment(name)), &body)
        .await?;
    if json {
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    let s: berth_contracts::ClientStanding = decode("client", v)?;
    print!("{}", details(&s.client));
    println!(
        "{} task(s) queued on its sites: {}",
        s.tasks.len(),
        s.tasks
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn tokens(
    client: &Client,
    json: bool,
    c: TokensCommand,
) -> Result<ExitCode, CliError> {
    match c {
        TokensCommand::Create(CreateToken {
            name,
            scopes,
            client: bound,
            expires_at,
        }) => {
            let mut body = json!({"name": name, "scopes": scopes});
            if let Some(b) = bound {
                body["client"] = b.into();
            }
            if let Some(e) = expires_at {
                body["expires_at"] = e.into();
            }
            let v = client.post("/tokens", &body).await?;
            if json {
                print_json(&v);
            } else {
                // The token alone on stdout (it is shown this once); the rest on stderr.
                let t: CreatedToken = decode("token", v)?;
                eprintln!(
                    "token {} ({}) {}{}",
                    t.info.name,
                    t.info.id,
                    t.info.scopes.join(" "),
                    t.info
                        .client
                        .map(|c| format!(", client {c}"))
                        .unwrap_or_default()
                );
                println!("{}", t.token);
            }
        }
        TokensCommand::List => {
            let v = client.get("/tokens", &[]).await?;
            if json {
                print_json(&v);
            } else {
                let list: Vec<ApiToken> = decode("tokens", v)?;
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.to_string(),
                            t.name.clone(),
                            t.scopes.join(" "),
                            t.client.clone().unwrap_or_default(),
                            t.expires_at.as_ref().map(time).unwrap_or_default(),
                            t.last_used_at.as_ref().map(time).unwrap_or_default(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &["ID", "NAME", "SCOPES", "CLIENT", "EXPIRES", "LAST USED"],
                        &rows
                    )
                );
            }
        }
        TokensCommand::Revoke { id } => {
            client.delete(&format!("/tokens/{}", segment(&id))).await?;
            println!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
