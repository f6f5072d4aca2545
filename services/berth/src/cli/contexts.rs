//! `berth contexts save` (hidden): Aegir's `provision-save @ctx --context_type=… …`, made
//! from the servers, platforms and sites commands.

use super::args::{
    CreateServer, CreateSite, PlatformsCommand, SaveContext, ServersCommand, SitesCommand,
};
use super::client::{CliError, Client, bare, decode, segment, usage};
use super::platforms::platforms;
use super::render::{print_json, site_details};
use super::servers::servers;
use super::sites::sites;
use super::tasks::created;
use berth_contracts::Site;
use serde_json::json;
use std::process::ExitCode;

/// `provision-save @ctx --context_type=… …` (and `--delete`).
pub(crate) async fn save(
    client: &Client,
    json: bool,
    c: SaveContext,
) -> Result<ExitCode, CliError> {
    let ctx = bare(&c.context).to_string();
    let kind = c.context_type.clone().unwrap_or_else(|| {
        if ctx.starts_with("server_") {
            "server".into()
        } else if ctx.starts_with("platform_") {
            "platform".into()
        } else {
            "site".into()
        }
    });
    if c.delete {
        let path = match kind.as_str() {
            "server" => format!("/servers/{}", segment(&ctx)),
            "platform" => format!("/platforms/{}", segment(&ctx)),
            _ => format!("/sites/{}", segment(&ctx)),
        };
        client.delete(&path).await?;
        println!("{kind} context {ctx} deleted");
        return Ok(ExitCode::SUCCESS);
    }
    let aliases: Option<Vec<String>> = c.aliases.as_deref().map(|a| {
        a.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    });
    // An existing context is updated with only the properties given, as Aegir does.
    let path = match kind.as_str() {
        "server" => format!("/servers/{}", segment(&ctx)),
        "platform" => format!("/platforms/{}", segment(&ctx)),
        _ => format!("/sites/{}", segment(&ctx)),
    };
    if client.exists(&path).await? {
        return update(client, json, &kind, &path, &c, aliases).await;
    }
    match kind.as_str() {
        "platform" => {
            let root = c
                .root
                .clone()
                .ok_or_else(|| usage("a platform needs --root=<absolute path of the codebase>"))?;
            platforms(
                client,
                json,
                PlatformsCommand::Create {
                    name: ctx,
                    root,
                    web_server: c.web_server.clone(),
                    drush: None,
                    follow: false,
                },
            )
            .await
        }
        "site" => {
            let uri = c.uri.clone().unwrap_or_else(|| ctx.clone());
            if uri != ctx {
                return Err(usage(format!(
                    "--uri={uri} must match the context name @{ctx}: a site's context name is its uri"
                )));
            }
            let platform = c
                .platform
                .clone()
                .ok_or_else(|| usage("a site needs --platform=@platform_<name>"))?;
            let site = CreateSite {
                uri,
                platform,
                db_server: c.db_server.clone(),
                profile: c.profile.clone(),
                language: c.language.clone(),
                client: c.client.clone(),
                client_email: c.client_email.clone(),
                aliases: aliases.unwrap_or_default(),
                redirection: c.redirection.unwrap_or(false),
                follow: false,
            };
            sites(client, json, SitesCommand::Create(site)).await
        }
        _ => {
            let host = c.remote_host.clone().ok_or_else(|| {
                usage("a server needs --remote_host=<its fully qualified host name>")
            })?;
            let server = CreateServer {
                host,
                name: Some(ctx),
                http: c.http_service_type.clone(),
                http_port: c.http_port,
                db: c.db_service_type.clone(),
                db_host: c.db_host.clone(),
                db_port: c.db_port,
                db_user: c.db_user.clone(),
                dns: c.dns_service_type.clone(),
                dns_port: c.dns_port,
            };
            // The db admin password comes from BERTH_DB_ADMIN_PASSWORD, as for `servers create`.
            servers(client, json, ServersCommand::Create(server)).await
        }
    }
}

/// `provision-save` of a context that exists: only what is given changes.
async fn update(
    client: &Client,
    json: bool,
    kind: &str,
    path: &str,
    c: &SaveContext,
    aliases: Option<Vec<String>>,
) -> Result<ExitCode, CliError> {
    match kind {
        "site" => {
            let mut body = json!({});
            if let Some(v) = &c.client {
                body["client"] = v.clone().into();
            }
            if let Some(v) = &c.client_email {
                body["client_email"] = v.clone().into();
            }
            if let Some(a) = aliases {
                body["aliases"] = a.into();
            }
            if let Some(r) = c.redirection {
                body["redirection"] = r.into();
            }
            let v = client.patch(path, &body).await?;
            let s: Site = decode("site", v.clone())?;
            created(client, json, v, false, site_details(&s)).await
        }
        "server" => {
            let mut services = serde_json::Map::new();
            if let Some(t) = &c.http_service_type {
                services.insert(
                    "http".into(),
                    json!({"type": t, "port": c.http_port.unwrap_or(80)}),
                );
            }
            if let Some(t) = &c.dns_service_type {
                services.insert(
                    "dns".into(),
                    json!({"type": t, "port": c.dns_port.unwrap_or(53)}),
                );
            }
            let mut body = json!({"services": services});
            if let Some(h) = &c.remote_host {
                body["host"] = h.clone().into();
            }
            let v = client.patch(path, &body).await?;
            if json {
                print_json(&v);
            } else {
                println!("server {} saved; its verify is queued", bare(&c.context));
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(usage(format!(
            "platform {} exists; a platform's root and web server are fixed: create another platform (and migrate its sites) to change them",
            bare(&c.context)
        ))),
    }
}
