//! Request guards: bearer-token authentication, the body size limit, and `Idempotency-Key`.

use crate::AppState;
use crate::error::ApiError;
use crate::scopes::{self, Scopes, Verdict};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_store::audit::NewAuditEntry;
use berth_store::clients::Visibility;
use berth_store::idempotency::Claim;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Who is asking: put in the request's extensions by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: Uuid,
    pub name: String,
    pub scopes: Scopes,
    /// The client the token is bound to: it sees and acts on that client's sites only.
    pub client: Option<ClientRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRef {
    pub id: Uuid,
    pub name: String,
}

impl Caller {
    /// What this caller may see: the filter every site-scoped query takes.
    pub fn visibility(&self) -> Visibility {
        match &self.client {
            None => Visibility::All,
            Some(c) => Visibility::Client(c.id),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 9110 §11.1: `bearer`, `BEARER` too); one or more spaces may follow it.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim()).filter(|t| !t.is_empty())
}

pub async fn authenticate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .ok_or(ApiError::Unauthorized)?;
    let info = state
        .store
        .authenticate(token)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    // A token whose stored scopes do not parse (made by hand, or by an older berth with a
    // scope it no longer knows) authenticates as nothing.
    let scopes = Scopes::from_stored(&info.scope).map_err(|_| ApiError::Unauthorized)?;
    req.extensions_mut().insert(Caller {
        token_id: info.id,
        name: info.name,
        scopes,
        client: info.client.map(|(id, name)| ClientRef { id, name }),
    });
    Ok(next.run(req).await)
}

/// The path under `/api/v1` (nested routers see it stripped already).
fn v1_path(path: &str) -> &str {
    path.strip_prefix("/api/v1").unwrap_or(path)
}

/// Applies [`scopes::authorize`] to every `/api/v1` request: a missing scope is a 403, an
/// operator route asked by a client-bound token a 404. No handler can be reached without it.
pub async fn authorize(req: Request, next: Next) -> Result<Response, ApiError> {
    let caller = req
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or(ApiError::Unauthorized)?;
    let route = scopes::classify(req.method(), v1_path(req.uri().path()));
    match scopes::authorize(&caller.scopes, caller.client.is_some(), route) {
        Verdict::Allow => Ok(next.run(req).await),
        Verdict::Forbidden(why) => Err(ApiError::Forbidden(why)),
        Verdict::Hidden => Err(ApiError::NotFound("no such route".into())),
    }
}

tokio::task_local! {
    /// The task the request being answered queued (the first one), for the audit log.
    pub(crate) static QUEUED_TASK: std::cell::Cell<Option<Uuid>>;
}

/// Notes the task a request queued, for its audit entry.
pub(crate) fn note_queued_task(id: Uuid) {
    let _ = QUEUED_TASK.try_with(|t| {
        if t.get().is_none() {
            t.set(Some(id));
        }
    });
}

fn is_mutating(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Writes an audit entry for every mutating request once its handler answered: who (token,
/// client), what (method, path, resource, Idempotency-Key), the status and the task queued.
/// Never the body. A failed write is logged; it never changes the answer.
pub async fn audit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !is_mutating(req.method()) {
        return next.run(req).await;
    }
    let caller = req.extensions().get::<Caller>().cloned();
    let method = req.method().to_string();
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map(|u| u.path().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let key = req
        .headers()
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(|k| k.chars().take(255).collect::<String>());
    let (res, task) = QUEUED_TASK
        .scope(std::cell::Cell::new(None), async {
            let res = next.run(req).await;
            (res, QUEUED_TASK.with(|t| t.get()))
        })
        .await;
    let entry = NewAuditEntry {
        token_id: caller.as_ref().map(|c| c.token_id),
        token_name: caller.as_ref().map(|c| c.name.clone()),
        client_id: caller
            .as_ref()
            .and_then(|c| c.client.as_ref().map(|c| c.id)),
        client: caller
            .as_ref()
            .and_then(|c| c.client.as_ref().map(|c| c.name.clone())),
        method,
        resource: resource_of(v1_path(&path)),
        path,
        idempotency_key: key,
        status: res.status().as_u16(),
        task_id: task,
    };
    if let Err(e) = state.store.write_audit(&entry).await {
        tracing::error!(error = %e, method = %entry.method, path = %entry.path, "audit entry not written");
    }
    res
}

/// The resource a path names: its family and item (`sites/a.example`), not sub-resources.
pub fn resource_of(path: &str) -> String {
    path.trim_start_matches('/')
        .split('/')
        .take(2)
        .collect::<Vec<_>>()
        .join("/")
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Reads the body within the size limit, and makes POSTs, PATCHes and DELETEs with an
/// `Idempotency-Key` answer the same way twice (the key is per token).
pub async fn body_and_idempotency(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = read_limited(body, state.max_body_bytes).await?;
    let key = match parts.headers.get(IDEMPOTENCY_KEY) {
        Some(v) if matches!(parts.method, Method::POST | Method::PATCH | Method::DELETE) => {
            let k = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "Idempotency-Key must be 1 to 255 visible characters".into(),
                    )
                })?;
            Some(k.to_string())
        }
        _ => None,
    };
    let caller = parts.extensions.get::<Caller>().cloned();
    let (Some(key), Some(caller)) = (key, caller) else {
        return Ok(next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await);
    };
    let mut h = Sha256::new();
    h.update(parts.method.as_str());
    h.update(b" ");
    h.update(parts.uri.path());
    h.update(b"\n");
    h.update(&bytes);
    let hash = hex::encode(h.finalize());
    match state
        .store
        .claim_idempotency_key(caller.token_id, &key, &hash)
        .await?
    {
        Claim::Mismatch => Err(ApiError::Unprocessable(
            "this Idempotency-Key was used with another request body; use a new key".into(),
        )),
        Claim::InFlight => {
            // Worth resending: the first request answers soon, or its claim's lease ends.
            let mut res = ApiError::Conflict(
                "a request with this Idempotency-Key is still being processed; retry shortly"
                    .into(),
            )
            .into_response();
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(res)
        }
        Claim::AnswerLost { task_id } => {
            let mut res = ApiError::Conflict(format!(
                "this Idempotency-Key's request was accepted as task {task_id}, but its answer \
                 was lost (the API stopped before sending it): see GET /api/v1/tasks/{task_id}"
            ))
            .into_response();
            if let Ok(l) = HeaderValue::from_str(&format!("/api/v1/tasks/{task_id}")) {
                res.headers_mut().insert(header::LOCATION, l);
            }
            Ok(res)
        }
        Claim::Replay {
            status,
            response,
            location,
        } => {
            let status =
                axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK);
            let mut res = if status == axum::http::StatusCode::NO_CONTENT {
                status.into_response()
            } else {
                (status, axum::Json(response)).into_response()
            };
            if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                res.headers_mut().insert(header::LOCATION, l);
            }
            res.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(res)
        }
        Claim::Proceed => {
            let res = crate::IDEMPOTENCY_CLAIM
                .scope(
                    (caller.token_id, key.clone()),
                    next.run(Request::from_parts(parts, Body::from(bytes))),
                )
                .await;
            if !res.status().is_success() {
                // A refused request leaves nothing behind, not even its key.
                state
                    .store
                    .release_idempotency_key(caller.token_id, &key)
                    .await?;
                return Ok(res);
            }
            let (rparts, rbody) = res.into_parts();
            let rbytes = rbody
                .collect()
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .to_bytes();
            let json: serde_json::Value =
                serde_json::from_slice(&rbytes).unwrap_or(serde_json::Value::Null);
            let location = rparts
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok());
            state
                .store
                .save_idempotent_response(
                    caller.token_id,
                    &key,
                    rparts.status.as_u16(),
                    &json,
                    location,
                )
                .await?;
            Ok(Response::from_parts(rparts, Body::from(rbytes)))
        }
    }
}

async fn read_limited(body: Body, max: usize) -> Result<Bytes, ApiError> {
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::TooLarge(max)),
        Err(e) => Err(ApiError::BadRequest(format!(
            "could not read the body: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::{bearer_token, resource_of};

    #[test]
    fn the_resource_is_the_family_and_item() {
        assert_eq!(resource_of("/sites/a.example/backups"), "sites/a.example");
        assert_eq!(resource_of("/tasks"), "tasks");
        assert_eq!(resource_of("/tasks/x/retry"), "tasks/x");
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer abc", "bearer abc", "BEARER abc", "BeArEr  abc "] {
            assert_eq!(bearer_token(v), Some("abc"), "{v}");
        }
        for v in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc", ""] {
            assert_eq!(bearer_token(v), None, "{v}");
        }
    }
}
