//! What the planner knows of a task's target, as the state service read it: servers and
//! their services, platforms, sites. Plans are built from these alone.

use crate::sites::grant_hosts;
use berth_contracts::steps::{
    DbServiceSpec, DnsServiceSpec, HttpServiceSpec, PlatformSpec, SiteDbSpec, SiteSpec,
};
use berth_contracts::{CronMethod, Installer};

/// What the planner knows of a server: its name and the types of its services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFacts {
    pub name: String,
    pub http: Option<HttpFacts>,
    pub db: Option<DbFacts>,
    pub dns: Option<DnsFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpFacts {
    pub service_type: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbFacts {
    pub service_type: String,
    pub host: String,
    pub port: u16,
    pub admin_user: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsFacts {
    pub service_type: String,
    pub port: u16,
}

/// A service berth drives (`null` is a service berth leaves alone).
fn managed(service_type: &str) -> bool {
    service_type != "null"
}

impl ServerFacts {
    pub fn managed_http(&self) -> Option<HttpServiceSpec> {
        self.http
            .as_ref()
            .filter(|h| managed(&h.service_type))
            .map(|h| HttpServiceSpec {
                service_type: h.service_type.clone(),
                port: h.port,
            })
    }

    pub fn managed_db(&self) -> Option<DbServiceSpec> {
        self.db
            .as_ref()
            .filter(|d| managed(&d.service_type))
            .map(|d| DbServiceSpec {
                service_type: d.service_type.clone(),
                host: d.host.clone(),
                port: d.port,
                admin_user: d.admin_user.clone(),
            })
    }

    pub fn managed_dns(&self) -> Option<DnsServiceSpec> {
        self.dns
            .as_ref()
            .filter(|d| managed(&d.service_type))
            .map(|d| DnsServiceSpec {
                service_type: d.service_type.clone(),
                port: d.port,
            })
    }

    /// berth writes this server's zones (BIND).
    pub fn bind(&self) -> bool {
        self.dns.as_ref().is_some_and(|d| d.service_type == "bind")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlatformFacts {
    pub name: String,
    pub root: String,
    /// The web server publishing the platform.
    pub web_server: ServerFacts,
    /// Its host name (where site users' database grants point).
    pub web_host: String,
    pub installer: Installer,
    pub drupal_major: Option<i32>,
    pub cron_method: CronMethod,
}

impl PlatformFacts {
    pub fn spec(&self) -> PlatformSpec {
        PlatformSpec {
            platform: self.name.clone(),
            root: self.root.clone(),
            installer: self.installer.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SiteFacts {
    pub uri: String,
    pub aliases: Vec<String>,
    pub redirection: bool,
    pub profile: String,
    pub language: String,
    pub client_email: Option<String>,
    pub status: String,
    /// Its client is suspended: the vhost serves the "site suspended" page.
    pub suspended: bool,
    pub db_name: String,
    pub db_user: String,
    /// The unix user (and group of the same number) the site's PHP and installer run as.
    pub unix_uid: u32,
    /// The site's database holds the cron key berth keeps for it (given by a
    /// `site-cron-key` step since the key was made or the database changed).
    pub cron_key_given: bool,
    pub platform: PlatformFacts,
    pub db_server: ServerFacts,
}

impl SiteFacts {
    /// The description every site step carries; `disabled`: the vhost serves the
    /// "site disabled" page.
    pub fn spec(&self, disabled: bool) -> SiteSpec {
        let db = self.db_server.db.as_ref();
        let http = self.platform.web_server.http.as_ref();
        let db_host = db.map(|d| d.host.as_str()).unwrap_or("127.0.0.1");
        SiteSpec {
            uri: self.uri.clone(),
            aliases: self.aliases.clone(),
            redirection: self.redirection,
            profile: self.profile.clone(),
            language: self.language.clone(),
            client_email: self.client_email.clone(),
            platform: self.platform.name.clone(),
            root: self.platform.root.clone(),
            drupal_major: self.platform.drupal_major,
            installer: self.platform.installer.clone(),
            disabled,
            suspended: self.suspended,
            unix_uid: self.unix_uid,
            http: HttpServiceSpec {
                service_type: http
                    .map(|h| h.service_type.as_str())
                    .unwrap_or("null")
                    .into(),
                port: http.map(|h| h.port).unwrap_or(80),
            },
            db: SiteDbSpec {
                service_type: db.map(|d| d.service_type.as_str()).unwrap_or("null").into(),
                host: db_host.into(),
                port: db.map(|d| d.port).unwrap_or(3306),
                admin_user: db.map(|d| d.admin_user.as_str()).unwrap_or("root").into(),
                name: self.db_name.clone(),
                user: self.db_user.clone(),
                grant_hosts: grant_hosts(&self.platform.web_host, db_host),
            },
            web_host: self.platform.web_host.clone(),
            stash: false,
        }
    }

    /// As [`Self::spec`], keeping the site's state: disabled stays disabled.
    pub fn spec_as_is(&self) -> SiteSpec {
        self.spec(self.status == crate::sites::status::DISABLED)
    }

    /// berth writes the records of the site's names.
    pub fn dns_managed(&self) -> bool {
        self.platform.web_server.bind()
    }

    /// The web server's name: the worker queues of the site's http, dns and backup steps.
    pub fn web(&self) -> &str {
        &self.platform.web_server.name
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub fn server(dns: &str) -> ServerFacts {
        ServerFacts {
            name: "server_master".into(),
            http: Some(HttpFacts {
                service_type: "nginx".into(),
                port: 8080,
            }),
            db: Some(DbFacts {
                service_type: "mariadb".into(),
                host: "127.0.0.1".into(),
                port: 3306,
                admin_user: "root".into(),
            }),
            dns: Some(DnsFacts {
                service_type: dns.into(),
                port: 53,
            }),
        }
    }

    pub fn site(status: &str, dns: &str) -> SiteFacts {
        SiteFacts {
            uri: "www.example.com".into(),
            aliases: vec!["example.com".into()],
            redirection: false,
            profile: "standard".into(),
            language: "en".into(),
            client_email: None,
            status: status.into(),
            suspended: false,
            db_name: "wwwexamplecom_abc123".into(),
            db_user: "wwwexamplecom_abc123".into(),
            unix_uid: 200_000,
            cron_key_given: true,
            platform: PlatformFacts {
                name: "platform_d10".into(),
                root: "/var/aegir/platforms/d10".into(),
                web_server: server(dns),
                web_host: "localhost".into(),
                installer: Installer::default(),
                drupal_major: Some(10),
                cron_method: CronMethod::Drush,
            },
            db_server: server(dns),
        }
    }
}
