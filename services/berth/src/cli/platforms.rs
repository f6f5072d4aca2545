//! `berth platforms …`: codebases on a web server (Aegir's platform contexts).

use super::args::PlatformsCommand;
use super::client::{CliError, Client, bare, decode, segment};
use super::render::{packages_table, platform_details, print_json, table};
use super::tasks::created;
use berth_contracts::{Package, Platform};
use serde_json::json;
use std::process::ExitCode;

pub(crate) async fn platforms(
    client: &Client,
    json: bool,
    c: PlatformsCommand,
) -> Result<ExitCode, CliError> {
    let one = |name: &str, what: &str| format!("/platforms/{}{what}", segment(bare(name)));
    let v = match c {
        PlatformsCommand::List => {
            let v = client.get("/platforms", &[]).await?;
            if !json {
                let list: Vec<Platform> = decode("platforms", v)?;
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|p| {
                        vec![
                            p.name.clone(),
                            p.status.clone(),
                            if p.locked { "locked" } else { "" }.into(),
                            p.core_version.clone().unwrap_or_default(),
                            p.sites.to_string(),
                            p.root.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["NAME", "STATUS", "", "DRUPAL", "SITES", "ROOT"], &rows)
                );
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        PlatformsCommand::Show { name } => client.get(&one(&name, ""), &[]).await?,
        PlatformsCommand::Create {
            name,
            root,
            web_server,
            drush,
            cron_method,
            follow,
        } => {
            let mut body = json!({"name": bare(&name), "root": root});
            if let Some(w) = web_server {
                body["web_server"] = bare(&w).into();
            }
            if let Some(d) = drush {
                body["installer"] = json!({"type": "drush", "bin": d});
            }
            if let Some(m) = cron_method {
                body["cron_method"] = m.into();
            }
            let v = client.post("/platforms", &body).await?;
            let p: Platform = decode("platform", v.clone())?;
            return created(client, json, v, follow, platform_details(&p)).await;
        }
        PlatformsCommand::Packages { name } => {
            let v = client.get(&one(&name, "/packages"), &[]).await?;
            if !json {
                print!(
                    "{}",
                    packages_table(&decode::<Vec<Package>>("packages", v)?)
                );
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        PlatformsCommand::Lock { name } => client.post(&one(&name, "/lock"), &json!({})).await?,
        PlatformsCommand::Unlock { name } => {
            client.post(&one(&name, "/unlock"), &json!({})).await?
        }
        PlatformsCommand::Delete { name } => {
            client.delete(&one(&name, "")).await?;
            println!(
                "platform {} deleted (its codebase stays on disk)",
                bare(&name)
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        print_json(&v);
    } else {
        print!("{}", platform_details(&decode("platform", v)?));
    }
    Ok(ExitCode::SUCCESS)
}
