//! Request guards: bearer-token authentication, the body size limit, and `Idempotency-Key`.

use crate::AppState;
use crate::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_store::idempotency::Claim;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Who is asking: put in the request's extensions by [`authenticate`].
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: Uuid,
    pub name: String,
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
    if info.scope != "admin" {
        return Err(ApiError::Unauthorized);
    }
    req.extensions_mut().insert(Caller {
        token_id: info.id,
        name: info.name,
    });
    Ok(next.run(req).await)
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Reads the body within the size limit, and makes POSTs with an `Idempotency-Key`
/// answer the same way twice.
pub async fn body_and_idempotency(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = read_limited(body, state.max_body_bytes).await?;
    let key = match parts.headers.get(IDEMPOTENCY_KEY) {
        Some(v) if parts.method == Method::POST => {
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
            let mut res = (
                axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK),
                axum::Json(response),
            )
                .into_response();
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
    use super::bearer_token;

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
