//! `berth servers …`: list, show, create and delete servers.

use super::args::{CreateServer, ServersCommand};
use super::client::{CliError, Client, decode, segment};
use super::render::{print_json, server_details, services_cells, table};
use berth_contracts::Server;
use serde_json::{Value, json};
use std::process::ExitCode;

/// The body of `POST /servers`. Built by hand: the contracts' `DbService` never
/// serialises the admin password (it is write-only), but it must be sent.
fn new_server_body(c: &CreateServer, db_password: Option<String>) -> Value {
    let mut services = serde_json::Map::new();
    if let Some(ty) = &c.http {
        services.insert(
            "http".into(),
            json!({"type": ty, "port": c.http_port.unwrap_or(80)}),
        );
    }
    if let Some(ty) = &c.db {
        let mut db = json!({
            "type": ty,
            "host": c.db_host.clone().unwrap_or_else(|| "127.0.0.1".into()),
            "port": c.db_port.unwrap_or(3306),
            "admin_user": c.db_user.clone().unwrap_or_else(|| "root".into()),
        });
        if let Some(p) = db_password {
            db["admin_password"] = Value::String(p);
        }
        services.insert("db".into(), db);
    }
    if let Some(ty) = &c.dns {
        services.insert(
            "dns".into(),
            json!({"type": ty, "port": c.dns_port.unwrap_or(53)}),
        );
    }
    let mut body = json!({"host": c.host, "services": services});
    if let Some(n) = &c.name {
        body["name"] = Value::String(n.strip_prefix('@').unwrap_or(n).to_string());
    }
    body
}

pub(crate) async fn servers(
    client: &Client,
    json: bool,
    c: ServersCommand,
) -> Result<ExitCode, CliError> {
    match c {
        ServersCommand::List => {
            let v = client.get("/servers", &[]).await?;
            if json {
                print_json(&v);
            } else {
                let list: Vec<Server> = decode("servers", v)?;
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|s| {
                        let [http, db, dns] = services_cells(s);
                        vec![s.name.clone(), s.host.clone(), http, db, dns]
                    })
                    .collect();
                print!("{}", table(&["NAME", "HOST", "HTTP", "DB", "DNS"], &rows));
            }
        }
        ServersCommand::Show { name } => {
            let name = name.strip_prefix('@').unwrap_or(&name);
            let v = client
                .get(&format!("/servers/{}", segment(name)), &[])
                .await?;
            if json {
                print_json(&v);
            } else {
                print!("{}", server_details(&decode("server", v)?));
            }
        }
        ServersCommand::Create(c) => {
            if c.db.as_deref().is_some_and(|t| t != "null")
                && std::env::var_os("BERTH_DB_ADMIN_PASSWORD").is_none()
            {
                eprintln!(
                    "note: BERTH_DB_ADMIN_PASSWORD is not set: the db server is saved without an admin password"
                );
            }
            let password = std::env::var("BERTH_DB_ADMIN_PASSWORD").ok();
            let v = client
                .post("/servers", &new_server_body(&c, password))
                .await?;
            if json {
                print_json(&v);
            } else {
                let s: Server = decode("server", v)?;
                print!("{}", server_details(&s));
                if let Some(t) = s.verify_task {
                    eprintln!(
                        "verify task {t} queued; follow it with `berth tasks log {t} --follow`"
                    );
                }
            }
        }
        ServersCommand::Delete { name } => {
            let name = name.strip_prefix('@').unwrap_or(&name);
            client
                .delete(&format!("/servers/{}", segment(name)))
                .await?;
            if json {
                print_json(&json!({"deleted": name}));
            } else {
                println!("deleted server {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{Cli, Command};
    use clap::Parser;

    #[test]
    fn the_db_password_is_sent_but_only_from_the_environment() {
        let cli = Cli::try_parse_from([
            "berth",
            "servers",
            "create",
            "--host",
            "db1.example.com",
            "--http",
            "nginx",
            "--db",
            "mariadb",
            "--db-host",
            "10.0.0.2",
            "--dns",
            "bind",
        ])
        .unwrap();
        let Command::Servers(ServersCommand::Create(c)) = cli.command else {
            panic!()
        };
        let body = new_server_body(&c, Some("s3cret".into()));
        assert_eq!(body["host"], "db1.example.com");
        assert_eq!(
            body["services"]["http"],
            json!({"type": "nginx", "port": 80})
        );
        assert_eq!(body["services"]["db"]["host"], "10.0.0.2");
        assert_eq!(body["services"]["db"]["port"], 3306);
        assert_eq!(body["services"]["db"]["admin_user"], "root");
        assert_eq!(body["services"]["db"]["admin_password"], "s3cret");
        assert_eq!(body["services"]["dns"], json!({"type": "bind", "port": 53}));
        assert!(body.get("name").is_none());
        let body = new_server_body(&c, None);
        assert!(body["services"]["db"].get("admin_password").is_none());
        // And the API accepts the shape.
        let _: berth_contracts::NewServer = serde_json::from_value(body).unwrap();
    }
}
