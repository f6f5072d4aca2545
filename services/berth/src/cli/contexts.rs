//! `berth contexts save` (hidden): Aegir's `provision-save @ctx --context_type=… …`, made
//! from the servers, platforms and sites commands.

use super::args::{
    CreateServer, CreateSite, PlatformsCommand, SaveContext, ServersCommand, SitesCommand,
};
use super::client::{CliError, Client, bare, decode, segment, usage};
use super::platforms::platforms;
use super::render::{platform_details, print_json, site_details};
use super::servers::servers;
use super::sites::sites;
use super::tasks::created;
use berth_contracts::{Platform, Server, Services, Site};
use serde_json::{Value, json};
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
    if c.makefile.as_deref().is_some_and(|m| !m.trim().is_empty()) {
        return Err(usage(
            "berth does not run drush make: build the codebase at --root first (drush make \
             <makefile> <root>, or composer), then save the platform without --makefile",
        ));
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
    if let Some(current) = client.find(&path).await? {
        return update(client, json, &kind, &path, current, &c, aliases).await;
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
                    cron_method: None,
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
            // Refuses a service's property without its type, as for a change.
            services_change(&Services::default(), &c, None)?;
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
    current: Value,
    c: &SaveContext,
    aliases: Option<Vec<String>>,
) -> Result<ExitCode, CliError> {
    match kind {
        "site" => {
            site_fixed(&decode("site", current)?, c)?;
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
            let now: Server = decode("server", current)?;
            let password = std::env::var("BERTH_DB_ADMIN_PASSWORD").ok();
            let services = services_change(&now.services, c, password)?;
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
        _ => {
            let now: Platform = decode("platform", current.clone())?;
            let moved = c.root.as_deref().is_some_and(|r| r != now.root)
                || c.web_server
                    .as_deref()
                    .is_some_and(|w| bare(w) != now.web_server);
            if moved {
                return Err(usage(format!(
                    "platform {} exists; a platform's root and web server are fixed: create another platform (and migrate its sites) to change them",
                    bare(&c.context)
                )));
            }
            // Saved again as it is (a script run twice, say): nothing to change.
            if json {
                print_json(&current);
            } else {
                print!("{}", platform_details(&now));
                eprintln!("platform {} unchanged", now.name);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A saved site's platform, db server, profile and language change only by a task (or
/// not at all): a `provision-save` giving others is refused, saying which.
fn site_fixed(now: &Site, c: &SaveContext) -> Result<(), CliError> {
    let differs =
        |given: &Option<String>, now: &str| given.as_deref().is_some_and(|g| bare(g) != now);
    let uri = &now.uri;
    if differs(&c.platform, &now.platform) || differs(&c.db_server, &now.db_server) {
        let mut args = serde_json::Map::new();
        if let Some(p) = c
            .platform
            .as_deref()
            .map(bare)
            .filter(|p| *p != now.platform)
        {
            args.insert("platform".into(), p.into());
        }
        if let Some(d) = c
            .db_server
            .as_deref()
            .map(bare)
            .filter(|d| *d != now.db_server)
        {
            args.insert("db_server".into(), d.into());
        }
        return Err(usage(format!(
            "site {uri} is on {} with its database on {}; a save does not move it: migrate it \
             with `berth tasks create migrate {uri} --args '{}' --follow`",
            now.platform,
            now.db_server,
            Value::Object(args)
        )));
    }
    if differs(&c.uri, uri) {
        return Err(usage(format!(
            "--uri must match the context name @{uri}: a site's context name is its uri"
        )));
    }
    if differs(&c.profile, &now.profile) || differs(&c.language, &now.language) {
        return Err(usage(format!(
            "site {uri} is installed with profile {} in {}; those are fixed after the install",
            now.profile, now.language
        )));
    }
    Ok(())
}

/// The `services` of a server change: each service given (by its type or any of its
/// properties) in full, what is not given kept from `now` (properties of a `null` service
/// apart), else the defaults. The db admin password goes with the db service only.
fn services_change(
    now: &Services,
    c: &SaveContext,
    db_password: Option<String>,
) -> Result<serde_json::Map<String, Value>, CliError> {
    let needs = |option: &str, service: &str| {
        usage(format!(
            "--{option} needs --{service}_service_type: the server has no {service} service yet"
        ))
    };
    let mut out = serde_json::Map::new();
    if c.http_service_type.is_some() || c.http_port.is_some() {
        let now = now.http.as_ref().filter(|h| h.service_type != "null");
        let ty = c
            .http_service_type
            .clone()
            .or_else(|| now.map(|h| h.service_type.clone()))
            .ok_or_else(|| needs("http_port", "http"))?;
        let port = c.http_port.or(now.map(|h| h.port)).unwrap_or(80);
        out.insert("http".into(), json!({"type": ty, "port": port}));
    }
    let db_option = [
        ("db_host", c.db_host.is_some()),
        ("db_port", c.db_port.is_some()),
        ("db_user", c.db_user.is_some()),
    ]
    .into_iter()
    .find(|(_, given)| *given);
    if c.db_service_type.is_some() || db_option.is_some() {
        let now = now.db.as_ref().filter(|d| d.service_type != "null");
        let ty = c
            .db_service_type
            .clone()
            .or_else(|| now.map(|d| d.service_type.clone()))
            .ok_or_else(|| needs(db_option.map_or("db_host", |(o, _)| o), "db"))?;
        let mut db = json!({
            "type": ty,
            "host": c.db_host.clone().or(now.map(|d| d.host.clone())).unwrap_or_else(|| "127.0.0.1".into()),
            "port": c.db_port.or(now.map(|d| d.port)).unwrap_or(3306),
            "admin_user": c.db_user.clone().or(now.map(|d| d.admin_user.clone())).unwrap_or_else(|| "root".into()),
        });
        if let Some(p) = db_password {
            db["admin_password"] = p.into();
        }
        out.insert("db".into(), db);
    }
    if c.dns_service_type.is_some() || c.dns_port.is_some() {
        let now = now.dns.as_ref().filter(|d| d.service_type != "null");
        let ty = c
            .dns_service_type
            .clone()
            .or_else(|| now.map(|d| d.service_type.clone()))
            .ok_or_else(|| needs("dns_port", "dns"))?;
        let port = c.dns_port.or(now.map(|d| d.port)).unwrap_or(53);
        out.insert("dns".into(), json!({"type": ty, "port": port}));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::{Cli, Command, ContextsCommand};
    use clap::Parser;

    fn saved(options: &[&str]) -> SaveContext {
        let argv = ["berth", "contexts", "save", "ctx"].iter().chain(options);
        let Command::Contexts(c) = Cli::try_parse_from(argv).unwrap().command else {
            panic!()
        };
        let ContextsCommand::Save(c) = *c;
        c
    }

    fn services(v: Value) -> Services {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_server_change_keeps_what_is_not_given() {
        let now = services(json!({
            "http": {"type": "nginx", "port": 8080},
            "db": {"type": "mariadb", "host": "10.0.0.2", "port": 3307, "admin_user": "aegir"},
        }));
        // A port alone keeps its type; a service not named is not sent.
        let out = services_change(&now, &saved(&["--http_port=8081"]), Some("pw".into())).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"http": {"type": "nginx", "port": 8081}})
        );
        // The db: given properties change, the others are kept; the password goes with it.
        let out = services_change(&now, &saved(&["--db_port=3308"]), Some("pw".into())).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"db": {"type": "mariadb", "host": "10.0.0.2", "port": 3308,
                          "admin_user": "aegir", "admin_password": "pw"}})
        );
        // A new service starts from the defaults.
        let out = services_change(&now, &saved(&["--dns_service_type=bind"]), None).unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"dns": {"type": "bind", "port": 53}})
        );
        // The API accepts the shape.
        let _: Services = serde_json::from_value(Value::Object(
            services_change(&now, &saved(&["--db_user=x", "--http_port=1"]), None).unwrap(),
        ))
        .unwrap();
    }

    #[test]
    fn a_property_without_its_service_type_is_refused() {
        let none = Services::default();
        for (option, needs) in [
            ("--http_port=80", "--http_port needs --http_service_type"),
            ("--db_host=h", "--db_host needs --db_service_type"),
            ("--db_user=u", "--db_user needs --db_service_type"),
            ("--dns_port=53", "--dns_port needs --dns_service_type"),
        ] {
            let e = services_change(&none, &saved(&[option]), None).unwrap_err();
            assert!(e.to_string().starts_with(needs), "{option}: {e}");
        }
        // A null service has no properties to keep.
        let null = services(json!({"db": {"type": "null"}}));
        assert!(services_change(&null, &saved(&["--db_port=1"]), None).is_err());
    }

    #[test]
    fn a_site_save_refuses_what_only_a_task_changes() {
        let now: Site = serde_json::from_value(json!({
            "uri": "example.com", "platform": "platform_a", "db_server": "server_master",
            "profile": "standard", "language": "en", "aliases": [], "redirection": false,
            "status": "enabled", "db_name": "d", "db_user": "u",
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
        }))
        .unwrap();
        // As it is, or with what may change: accepted.
        for same in [
            &[
                "--platform=@platform_a",
                "--db_server=@server_master",
                "--uri=example.com",
            ][..],
            &[
                "--profile=standard",
                "--language=en",
                "--client_email=a@example.com",
            ],
        ] {
            site_fixed(&now, &saved(same)).unwrap();
        }
        let e = site_fixed(&now, &saved(&["--platform=@platform_b"])).unwrap_err();
        assert!(
            e.to_string().contains(
                r#"`berth tasks create migrate example.com --args '{"platform":"platform_b"}' --follow`"#
            ),
            "{e}"
        );
        let e = site_fixed(&now, &saved(&["--db_server=@server_db"])).unwrap_err();
        assert!(
            e.to_string().contains(r#"{"db_server":"server_db"}"#),
            "{e}"
        );
        let e = site_fixed(&now, &saved(&["--profile=minimal"])).unwrap_err();
        assert!(e.to_string().contains("fixed after the install"), "{e}");
        assert!(site_fixed(&now, &saved(&["--uri=other.example.com"])).is_err());
    }
}
