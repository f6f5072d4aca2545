//! The CLI for platforms and sites, and Aegir's `provision-save` mapped onto the API.

use crate::cli::{
    CliError, Client, CreateServer, CreateSite, PlatformsCommand, SaveContext, ServersCommand,
    SitesCommand, decode, exit_for, follow_log, kv, opt_time, print_json, queued, segment, table,
    time, usage,
};
use berth_contracts::{Package, Platform, Site, Task};
use serde_json::{Value, json};
use std::process::ExitCode;

fn bare(name: &str) -> &str {
    name.strip_prefix('@').unwrap_or(name)
}

fn platform_details(p: &Platform) -> String {
    kv(&[
        ("name", p.name.clone()),
        ("root", p.root.clone()),
        ("web server", p.web_server.clone()),
        ("status", p.status.clone()),
        ("locked", p.locked.to_string()),
        (
            "drupal",
            p.core_version.clone().unwrap_or_else(|| "-".into()),
        ),
        ("sites", p.sites.to_string()),
        ("to import", p.found_sites.join(", ")),
        ("verified", opt_time(&p.verified_at)),
    ])
}

fn site_details(s: &Site) -> String {
    let mut rows = vec![
        ("uri", s.uri.clone()),
        ("status", s.status.clone()),
        ("platform", s.platform.clone()),
        ("db server", s.db_server.clone()),
        ("database", s.db_name.clone()),
        ("profile", format!("{} ({})", s.profile, s.language)),
        ("aliases", s.aliases.join(", ")),
        (
            "redirection",
            if s.redirection { "on" } else { "off" }.into(),
        ),
        ("client", s.client.clone().unwrap_or_default()),
        ("client e-mail", s.client_email.clone().unwrap_or_default()),
        ("created", time(&s.created_at)),
    ];
    if let Some(link) = &s.login_link {
        rows.push(("login link", link.clone()));
    }
    kv(&rows)
}

fn packages_table(list: &[Package]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.package_type.as_str().into(),
                p.version.clone().unwrap_or_default(),
                p.schema_version.map(|v| v.to_string()).unwrap_or_default(),
            ]
        })
        .collect();
    table(&["NAME", "TYPE", "VERSION", "SCHEMA"], &rows)
}

/// Prints a created context and follows (or names) the task it queued.
async fn created(
    client: &Client,
    json: bool,
    v: Value,
    follow: bool,
    details: String,
) -> Result<ExitCode, CliError> {
    let task = v.get("task").and_then(Value::as_str).map(str::to_string);
    if json && !follow {
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        print!("{details}");
    }
    match task {
        Some(t) if follow => {
            let id = t.parse().map_err(|_| usage("the API gave a bad task id"))?;
            eprintln!("following task {t}");
            Ok(exit_for(follow_log(client, id, json).await?))
        }
        Some(t) => {
            eprintln!("task {t} queued; follow it with `berth tasks log {t} --follow`");
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

pub async fn platforms(
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
            follow,
        } => {
            let mut body = json!({"name": bare(&name), "root": root});
            if let Some(w) = web_server {
                body["web_server"] = bare(&w).into();
            }
            if let Some(d) = drush {
                body["installer"] = json!({"type": "drush", "bin": d});
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

pub async fn sites(client: &Client, json: bool, c: SitesCommand) -> Result<ExitCode, CliError> {
    let one = |uri: &str, what: &str| format!("/sites/{}{what}", segment(bare(uri)));
    let v = match c {
        SitesCommand::List { platform, status } => {
            let mut q = Vec::new();
            if let Some(p) = platform {
                q.push(("platform", bare(&p).to_string()));
            }
            if let Some(s) = status {
                q.push(("status", s));
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
                        vec![
                            b.id.to_string(),
                            time(&b.created_at),
                            format!("{:.1} MB", b.size as f64 / 1e6),
                            b.description.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["ID", "CREATED", "SIZE", "DESCRIPTION"], &rows)
                );
                return Ok(ExitCode::SUCCESS);
            }
            v
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

/// `provision-save @ctx --context_type=… …` (and `--delete`).
pub async fn save(client: &Client, json: bool, c: SaveContext) -> Result<ExitCode, CliError> {
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
            crate::cli::servers(client, json, ServersCommand::Create(server)).await
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
