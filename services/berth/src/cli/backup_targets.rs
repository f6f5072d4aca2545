//! `berth backup-targets …`: off-site targets backups are copied to: add, list, show,
//! remove. The secret access key never goes through argv.

use super::args::{AddBackupTarget, BackupTargetsCommand};
use super::client::{CliError, Client, decode, usage};
use super::render::{print_json, table, time};
use berth_contracts::BackupTarget;
use serde_json::json;
use std::io::BufRead;
use std::process::ExitCode;

/// The variable the secret access key is read from (else stdin's first line).
const SECRET_VAR: &str = "BERTH_TARGET_SECRET_ACCESS_KEY";

fn secret_access_key() -> Result<String, CliError> {
    if let Ok(s) = std::env::var(SECRET_VAR)
        && !s.is_empty()
    {
        return Ok(s);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| usage(format!("reading the secret access key from stdin: {e}")))?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    if line.is_empty() {
        return Err(usage(format!(
            "the secret access key: set {SECRET_VAR} or give it on stdin's first line"
        )));
    }
    Ok(line)
}

fn details(t: &BackupTarget) -> String {
    let rows = [
        ("name", t.name.clone()),
        ("kind", t.kind.clone()),
        ("endpoint", t.endpoint.clone()),
        ("bucket", t.bucket.clone()),
        ("prefix", t.prefix.clone()),
        ("region", t.region.clone()),
        ("access key id", t.access_key_id.clone()),
        (
            "retention",
            t.retention
                .as_ref()
                .map(|r| serde_json::to_string(r).unwrap_or_default())
                .unwrap_or_else(|| "none (copies go with their backups)".into()),
        ),
        ("copies", t.copies.to_string()),
        ("created", time(&t.created_at)),
    ];
    rows.iter().map(|(k, v)| format!("{k:<14} {v}\n")).collect()
}

fn path(name: &str) -> String {
    format!("/backup-targets/{}", name.trim())
}

pub(crate) async fn backup_targets(
    client: &Client,
    json: bool,
    c: BackupTargetsCommand,
) -> Result<ExitCode, CliError> {
    let v = match c {
        BackupTargetsCommand::Add(AddBackupTarget {
            name,
            endpoint,
            bucket,
            prefix,
            region,
            access_key_id,
        }) => {
            let secret = secret_access_key()?;
            client
                .post(
                    "/backup-targets",
                    &json!({"name": name, "kind": "s3", "endpoint": endpoint, "bucket": bucket,
                        "prefix": prefix, "region": region, "access_key_id": access_key_id,
                        "secret_access_key": secret}),
                )
                .await?
        }
        BackupTargetsCommand::List => {
            let v = client.get("/backup-targets", &[]).await?;
            if !json {
                let list: Vec<BackupTarget> = decode("backup targets", v)?;
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|t| {
                        vec![
                            t.name.clone(),
                            t.endpoint.clone(),
                            t.bucket.clone(),
                            t.prefix.clone(),
                            t.copies.to_string(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["NAME", "ENDPOINT", "BUCKET", "PREFIX", "COPIES"], &rows)
                );
                return Ok(ExitCode::SUCCESS);
            }
            v
        }
        BackupTargetsCommand::Show { name } => client.get(&path(&name), &[]).await?,
        BackupTargetsCommand::Retention { name, rules, none } => {
            let retention = if none {
                serde_json::Value::Null
            } else {
                json!(super::schedules::retention_spec(&rules)?)
            };
            client
                .patch(&path(&name), &json!({ "retention": retention }))
                .await?
        }
        BackupTargetsCommand::Remove { name } => {
            client.delete(&path(&name)).await?;
            println!("backup target {} removed", name.trim());
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        print_json(&v);
    } else {
        print!("{}", details(&decode("backup target", v)?));
    }
    Ok(ExitCode::SUCCESS)
}
