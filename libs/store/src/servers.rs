//! Servers and their services (Aegir's server contexts).

use crate::{Result, Store, StoreError, conflict_on_unique};
use berth_contracts::{DbService, DnsService, HttpService, Server, Services};
use berth_hosting::facts::{DbFacts, DnsFacts, HttpFacts, ServerFacts};
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

#[derive(Debug, Clone, sqlx::FromRow)]
struct ServerRow {
    name: String,
    host: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct ServiceRow {
    service: String,
    #[sqlx(rename = "type")]
    service_type: String,
    port: i32,
    host: Option<String>,
    admin_user: Option<String>,
    admin_password_sealed: Option<String>,
}

/// A server as stored, with the sealed db admin password (never sent to clients).
#[derive(Debug, Clone)]
pub struct StoredServer {
    pub server: Server,
    pub db_admin_password_sealed: Option<String>,
}

impl StoredServer {
    pub fn facts(&self) -> ServerFacts {
        let s = &self.server.services;
        ServerFacts {
            name: self.server.name.clone(),
            http: s.http.as_ref().map(|h| HttpFacts {
                service_type: h.service_type.clone(),
                port: h.port,
            }),
            db: s.db.as_ref().map(|d| DbFacts {
                service_type: d.service_type.clone(),
                host: d.host.clone(),
                port: d.port,
                admin_user: d.admin_user.clone(),
            }),
            dns: s.dns.as_ref().map(|d| DnsFacts {
                service_type: d.service_type.clone(),
                port: d.port,
            }),
        }
    }
}

fn assemble(row: ServerRow, services: Vec<ServiceRow>) -> StoredServer {
    let mut out = Services::default();
    let mut sealed = None;
    for s in services {
        let port = s.port as u16;
        match s.service.as_str() {
            "http" => {
                out.http = Some(HttpService {
                    service_type: s.service_type,
                    port,
                })
            }
            "db" => {
                sealed = s.admin_password_sealed;
                out.db = Some(DbService {
                    service_type: s.service_type,
                    host: s.host.unwrap_or_default(),
                    port,
                    admin_user: s.admin_user.unwrap_or_default(),
                    admin_password: None,
                });
            }
            "dns" => {
                out.dns = Some(DnsService {
                    service_type: s.service_type,
                    port,
                })
            }
            _ => {}
        }
    }
    StoredServer {
        server: Server {
            name: row.name,
            host: row.host,
            services: out,
            created_at: row.created_at,
            updated_at: row.updated_at,
            verify_task: None,
        },
        db_admin_password_sealed: sealed,
    }
}

pub async fn insert_server(conn: &mut PgConnection, name: &str, host: &str) -> Result<()> {
    sqlx::query("INSERT INTO servers (name, host) VALUES ($1, $2)")
        .bind(name)
        .bind(host)
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!("a server named `{name}` or with host `{host}` exists already")
            })
        })?;
    Ok(())
}

pub async fn update_host(conn: &mut PgConnection, name: &str, host: &str) -> Result<()> {
    sqlx::query("UPDATE servers SET host = $2, updated_at = now() WHERE name = $1")
        .bind(name)
        .bind(host)
        .execute(&mut *conn)
        .await
        .map_err(|e| conflict_on_unique(e, || format!("another server has host `{host}`")))?;
    Ok(())
}

/// Replaces the services given (a service left out keeps what it had). A db service sent
/// without a password keeps the sealed password it had.
pub async fn save_services(
    conn: &mut PgConnection,
    name: &str,
    services: &Services,
    db_password_sealed: Option<&str>,
) -> Result<()> {
    // (service, type, port, host, admin user)
    type Row<'a> = (&'a str, &'a str, u16, Option<&'a str>, Option<&'a str>);
    let mut rows: Vec<Row> = Vec::new();
    if let Some(h) = &services.http {
        rows.push(("http", &h.service_type, h.port, None, None));
    }
    if let Some(d) = &services.db {
        rows.push((
            "db",
            &d.service_type,
            d.port,
            Some(&d.host),
            Some(&d.admin_user),
        ));
    }
    if let Some(d) = &services.dns {
        rows.push(("dns", &d.service_type, d.port, None, None));
    }
    for (service, service_type, port, host, user) in rows {
        let sealed = if service == "db" {
            db_password_sealed
        } else {
            None
        };
        sqlx::query(
            "INSERT INTO server_services (server, service, type, port, host, admin_user, admin_password_sealed)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (server, service) DO UPDATE SET type = EXCLUDED.type, port = EXCLUDED.port,
               host = EXCLUDED.host, admin_user = EXCLUDED.admin_user,
               admin_password_sealed = COALESCE(EXCLUDED.admin_password_sealed, server_services.admin_password_sealed)",
        )
        .bind(name)
        .bind(service)
        .bind(service_type)
        .bind(port as i32)
        .bind(host)
        .bind(user)
        .bind(sealed)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("UPDATE servers SET updated_at = now() WHERE name = $1")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn get_server(conn: &mut PgConnection, name: &str) -> Result<Option<StoredServer>> {
    // One round trip: the server joined with its services (one row per service, or one
    // row of NULLs when it has none).
    #[derive(sqlx::FromRow)]
    struct Joined {
        #[sqlx(flatten)]
        server: ServerRow,
        service: Option<String>,
        service_type: Option<String>,
        port: Option<i32>,
        service_host: Option<String>,
        admin_user: Option<String>,
        admin_password_sealed: Option<String>,
    }
    let rows = sqlx::query_as::<_, Joined>(
        "SELECT s.name, s.host, s.created_at, s.updated_at, ss.service, ss.type AS service_type,
                ss.port, ss.host AS service_host, ss.admin_user, ss.admin_password_sealed
         FROM servers s LEFT JOIN server_services ss ON ss.server = s.name
         WHERE s.name = $1",
    )
    .bind(name)
    .fetch_all(&mut *conn)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let server = first.server.clone();
    let services = rows
        .into_iter()
        .filter_map(|r| {
            Some(ServiceRow {
                service: r.service?,
                service_type: r.service_type?,
                port: r.port?,
                host: r.service_host,
                admin_user: r.admin_user,
                admin_password_sealed: r.admin_password_sealed,
            })
        })
        .collect();
    Ok(Some(assemble(server, services)))
}

impl Store {
    pub async fn server_exists(&self, name: &str) -> Result<bool> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM servers WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    pub async fn get_server(&self, name: &str) -> Result<Option<StoredServer>> {
        let mut conn = self.pool.acquire().await?;
        get_server(&mut conn, name).await
    }

    pub async fn list_servers(&self) -> Result<Vec<Server>> {
        let rows = sqlx::query_as::<_, ServerRow>(
            "SELECT name, host, created_at, updated_at FROM servers ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        #[derive(sqlx::FromRow)]
        struct Owned {
            server: String,
            #[sqlx(flatten)]
            row: ServiceRow,
        }
        let mut services = sqlx::query_as::<_, Owned>(
            "SELECT server, service, type, port, host, admin_user, admin_password_sealed
             FROM server_services",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let (mine, rest): (Vec<_>, Vec<_>) =
                    services.drain(..).partition(|o| o.server == row.name);
                services = rest;
                assemble(row, mine.into_iter().map(|o| o.row).collect()).server
            })
            .collect())
    }

    /// Deletes a server unless something still uses it (an unfinished task on it, or a step
    /// waiting for one of its workers). Its finished tasks keep their rows.
    pub async fn delete_server(&self, name: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT name FROM servers WHERE name = $1 FOR UPDATE")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!("server `{name}`")));
        }
        let (busy,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM tasks t WHERE t.status IN ('queued', 'processing')
               AND (t.target = $1 OR EXISTS (SELECT 1 FROM steps s WHERE s.task_id = t.id AND s.server = $1))",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        if busy > 0 {
            return Err(StoreError::Conflict(format!(
                "server `{name}` is in use by {busy} unfinished task(s); wait for them or cancel them"
            )));
        }
        // Platforms and sites keep their history, so a server they name stays.
        let users: Vec<(String,)> = sqlx::query_as(
            "SELECT name FROM platforms WHERE web_server = $1
             UNION SELECT uri FROM sites WHERE db_server = $1 ORDER BY 1 LIMIT 5",
        )
        .bind(name)
        .fetch_all(&mut *tx)
        .await?;
        if !users.is_empty() {
            let list: Vec<_> = users.into_iter().map(|(u,)| u).collect();
            return Err(StoreError::Conflict(format!(
                "server `{name}` is used by {}; it stays while they are recorded",
                list.join(", ")
            )));
        }
        sqlx::query("DELETE FROM servers WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
