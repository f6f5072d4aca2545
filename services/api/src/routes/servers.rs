//! `/api/v1/servers`: Aegir's server contexts. Saving a server queues its verify task.

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::guard::Caller;
use crate::intake::{self, Saved};
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_contracts::{DbService, NewServer, Server, ServerChange, Services, TargetKind};
use berth_hosting::tasks::TaskType;
use berth_hosting::{HostName, ServerName};
use berth_store::servers;

const HTTP_TYPES: [&str; 2] = ["nginx", "null"];
/// Why `apache` (an Aegir http type) is refused: the http worker writes nginx vhosts only.
const APACHE_REFUSED: &str = "http service type `apache` is not supported: berth builds \
     nginx vhosts only; use `nginx`, or `null` for a server without managed http";
const DB_TYPES: [&str; 3] = ["mariadb", "mysql", "null"];
const DNS_TYPES: [&str; 2] = ["bind", "null"];

fn check_type(service: &str, ty: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&ty) {
        Ok(())
    } else {
        Err(ApiError::Unprocessable(format!(
            "{service} service type `{ty}` is not one of: {}",
            allowed.join(", ")
        )))
    }
}

fn check_db(db: &DbService) -> Result<(), ApiError> {
    check_type("db", &db.service_type, &DB_TYPES)?;
    if db.service_type == "null" {
        return Ok(());
    }
    if db.host.parse::<std::net::IpAddr>().is_err() {
        HostName::parse(&db.host).map_err(|e| ApiError::Unprocessable(format!("db host: {e}")))?;
    }
    let user_ok = !db.admin_user.is_empty()
        && db.admin_user.len() <= 80
        && db
            .admin_user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !user_ok {
        return Err(ApiError::Unprocessable(
            "db admin_user must be 1 to 80 letters, digits, `_`, `-` or `.`".into(),
        ));
    }
    if db.port == 0 {
        return Err(ApiError::Unprocessable("db port must be 1 to 65535".into()));
    }
    Ok(())
}

fn check_services(s: &Services) -> Result<(), ApiError> {
    if let Some(h) = &s.http {
        if h.service_type == "apache" {
            return Err(ApiError::Unprocessable(APACHE_REFUSED.into()));
        }
        check_type("http", &h.service_type, &HTTP_TYPES)?;
        if h.port == 0 {
            return Err(ApiError::Unprocessable(
                "http port must be 1 to 65535".into(),
            ));
        }
    }
    if let Some(d) = &s.db {
        check_db(d)?;
    }
    if let Some(d) = &s.dns {
        check_type("dns", &d.service_type, &DNS_TYPES)?;
        if d.port == 0 {
            return Err(ApiError::Unprocessable(
                "dns port must be 1 to 65535".into(),
            ));
        }
    }
    Ok(())
}

fn sealed_password(state: &AppState, s: &Services) -> Option<String> {
    s.db.as_ref()
        .and_then(|d| d.admin_password.as_deref())
        .map(|p| state.secret_key.seal(p))
}

/// Saves the server and queues its verify, in one transaction.
async fn save_and_verify(
    state: &AppState,
    caller: &Caller,
    name: &str,
    host: Option<&str>,
    create: bool,
    services: &Services,
) -> Result<Server, ApiError> {
    let sealed = sealed_password(state, services);
    let mut tx = state.store.pool.begin().await?;
    match (create, host) {
        (true, Some(h)) => servers::insert_server(&mut tx, name, h).await?,
        (false, Some(h)) => servers::update_host(&mut tx, name, h).await?,
        _ => {}
    }
    servers::save_services(&mut tx, name, services, sealed.as_deref()).await?;
    let (task, message) = intake::queue_saved(
        state,
        &mut tx,
        caller,
        Saved {
            task_type: TaskType::Verify,
            target: name,
            kind: TargetKind::Server,
        },
    )
    .await?;
    let mut stored = servers::get_server(&mut tx, name)
        .await?
        .ok_or_else(|| ApiError::Internal("saved server vanished".into()))?;
    tx.commit().await?;
    state.outbox.publish(vec![message]);
    stored.server.verify_task = Some(task.id);
    Ok(stored.server)
}

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewServer>,
) -> Result<Response, ApiError> {
    // Normalised as site names are (case, trailing dot, IDN); a single label is a fine host.
    let host =
        HostName::normalise(&body.host).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    let name = ServerName::for_new_server(&host, body.name.as_deref())
        .map_err(|e| ApiError::Unprocessable(e.to_string()))?;
    check_services(&body.services)?;
    let server = save_and_verify(
        &state,
        &caller,
        name.as_str(),
        Some(host.as_str()),
        true,
        &body.services,
    )
    .await?;
    let location = format!("/api/v1/servers/{}", server.name);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        axum::Json(server),
    )
        .into_response())
}

pub async fn list(State(state): State<AppState>) -> Result<axum::Json<Vec<Server>>, ApiError> {
    Ok(axum::Json(state.store.list_servers().await?))
}

fn parse_name(name: &str) -> Result<ServerName, ApiError> {
    ServerName::parse(name).map_err(|e| ApiError::NotFound(e.to_string()))
}

pub async fn show(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<axum::Json<Server>, ApiError> {
    let name = parse_name(&name)?;
    let s = state
        .store
        .get_server(name.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("server `{name}` not found")))?;
    Ok(axum::Json(s.server))
}

/// Changes only what is given, like `provision-save`, and queues a verify.
pub async fn change(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ServerChange>,
) -> Result<axum::Json<Server>, ApiError> {
    let name = parse_name(&name)?;
    if !state.store.server_exists(name.as_str()).await? {
        return Err(ApiError::NotFound(format!("server `{name}` not found")));
    }
    let host = match &body.host {
        Some(h) => {
            let host =
                HostName::normalise(h).map_err(|e| ApiError::Unprocessable(e.to_string()))?;
            if !name.is_master() && ServerName::for_host(&host) != name {
                return Err(ApiError::Unprocessable(format!(
                    "host `{host}` would rename the server; create a new server instead"
                )));
            }
            Some(host)
        }
        None => None,
    };
    // Nothing given is still a save, and so still a verify (as Aegir does).
    let services = body.services.unwrap_or_default();
    check_services(&services)?;
    let server = save_and_verify(
        &state,
        &caller,
        name.as_str(),
        host.as_ref().map(|h| h.as_str()),
        false,
        &services,
    )
    .await?;
    Ok(axum::Json(server))
}

pub async fn delete(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let name = parse_name(&name)?;
    state.store.delete_server(name.as_str()).await?;
    // Its work queues go too, with any step left in them (of tasks cancelled while no worker
    // took them): a worker started later for the name must not run those. Best effort: a
    // queue left behind is harmless until then.
    for svc in berth_contracts::Service::ALL.map(|s| s.as_str()) {
        let queue = berth_broker::topology::work_queue(svc, name.as_str());
        match state.broker.delete_queue(&queue).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(%queue, messages = n, "deleted server's queue dropped steps"),
            Err(e) => tracing::warn!(%queue, error = %e, "deleted server's queue left behind"),
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use berth_contracts::HttpService;

    fn http(ty: &str) -> Services {
        Services {
            http: Some(HttpService {
                service_type: ty.into(),
                port: 80,
            }),
            ..Services::default()
        }
    }

    #[test]
    fn apache_is_refused_with_the_types_to_use_instead() {
        let e = check_services(&http("apache")).unwrap_err();
        assert!(
            matches!(&e, ApiError::Unprocessable(m) if m == APACHE_REFUSED),
            "{e:?}"
        );
        assert!(APACHE_REFUSED.contains("`nginx`") && APACHE_REFUSED.contains("`null`"));
        assert_eq!(e.into_response().status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(check_services(&http("nginx")).is_ok());
        assert!(check_services(&http("null")).is_ok());
        let e = check_services(&http("lighttpd")).unwrap_err();
        assert!(
            matches!(&e, ApiError::Unprocessable(m) if m.ends_with("nginx, null")),
            "{e:?}"
        );
    }
}
