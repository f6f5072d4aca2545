//! The API's one error type: every failure becomes an RFC 9457 problem+json answer.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_contracts::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// A request past a client's quota (409, `quota-exceeded`), naming it.
    #[error("client `{}` is at its quota {}: the limit is {}, the usage {}", .0.client, .0.quota.as_str(), .0.limit, .0.usage)]
    QuotaExceeded(berth_store::clients::QuotaExceeded),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            Self::Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-input",
                "Invalid input",
            ),
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authentication required",
            ),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            Self::QuotaExceeded(_) => (StatusCode::CONFLICT, "quota-exceeded", "Quota exceeded"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
            Self::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Request body too large",
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, slug, title) = self.parts();
        Problem {
            problem_type: format!("https://berth.dev/problems/{slug}"),
            title: title.into(),
            status: status.as_u16(),
            // Internal details go to the log, not to the client.
            detail: match self {
                Self::Internal(_) => Some("see the server log".into()),
                other => Some(other.to_string()),
            },
            instance: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "internal error");
        }
        let problem = self.problem();
        let status = StatusCode::from_u16(problem.status).expect("valid status");
        let mut body = serde_json::to_value(&problem).unwrap_or_default();
        if let (Self::QuotaExceeded(q), Some(o)) = (&self, body.as_object_mut()) {
            // RFC 9457 extension members: what a storefront shows its customer.
            o.insert("quota".into(), q.quota.as_str().into());
            o.insert("limit".into(), q.limit.into());
            o.insert("usage".into(), q.usage.into());
            o.insert("client".into(), q.client.clone().into());
        }
        let mut res = (status, axum::Json(body)).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if matches!(self, Self::Unavailable(_)) {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        }
        if matches!(self, Self::Unauthorized) {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"berth\""),
            );
        }
        res
    }
}

impl From<berth_store::StoreError> for ApiError {
    fn from(e: berth_store::StoreError) -> Self {
        use berth_store::StoreError as E;
        match e {
            E::NotFound(what) => Self::NotFound(format!("{what} not found")),
            E::Conflict(why) => Self::Conflict(why),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as R;
        match r {
            R::MissingJsonContentType(_) => Self::UnsupportedMediaType,
            R::JsonSyntaxError(e) => Self::BadRequest(format!("malformed JSON: {}", e.body_text())),
            R::JsonDataError(e) => Self::Unprocessable(e.body_text()),
            R::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::TooLarge(0)
            }
            other => Self::BadRequest(other.body_text()),
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        Self::BadRequest(r.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        Self::BadRequest(r.body_text())
    }
}

/// `Json` whose rejections are problem+json. The body must be a JSON object: serde would
/// otherwise read a struct from an array of its fields in order, so `[null, null]` was a
/// valid (empty) change.
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        // The body-size middleware has already read the body within its limit.
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|e| ApiError::BadRequest(format!("reading the body: {e}")))?;
        let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes.clone()));
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::Unprocessable(
                "the request body must be a JSON object".into(),
            ));
        }
        Ok(Self(v))
    }
}

/// `Query` whose rejections are problem+json. A query that decodes to a NUL character is
/// refused with 400 here: PostgreSQL text cannot hold NUL, so a filter with one would fail in
/// the database as a 500.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        // A raw query cannot hold a NUL byte, so `%00` is the only way to send one.
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(ApiError::BadRequest(
                "query parameters may not contain NUL characters".into(),
            ));
        }
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(v))
    }
}

/// `Path` whose rejections are problem+json.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use std::collections::BTreeMap;
    use tower::ServiceExt;

    async fn echo(ApiQuery(q): ApiQuery<BTreeMap<String, String>>) -> String {
        q.into_values().collect::<Vec<_>>().join(",")
    }

    async fn call(uri: &str) -> (StatusCode, String, String) {
        let app = Router::new().route("/q", get(echo));
        let res = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let ct = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await
            .unwrap()
            .to_bytes();
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    }

    /// Found by ops/schemathesis.sh: `GET /api/v1/sites?client=%00` and
    /// `GET /api/v1/tasks?type=%00` were 500s (PostgreSQL refuses NUL in text).
    #[tokio::test]
    async fn a_query_with_a_nul_is_a_400_problem() {
        for uri in ["/q?client=a%00b", "/q?a%00=x", "/q?platform=&type=%00"] {
            let (status, ct, body) = call(uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(ct, "application/problem+json", "{uri}");
            assert!(body.contains("NUL"), "{uri}: {body}");
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Change {
        host: Option<String>,
        port: Option<u16>,
    }

    async fn change(ApiJson(c): ApiJson<Change>) -> String {
        format!("{c:?}")
    }

    async fn post(body: &str) -> (StatusCode, String) {
        let app = Router::new().route("/j", axum::routing::patch(change));
        let res = app
            .oneshot(
                Request::patch("/j")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status();
        let ct = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, ct)
    }

    /// Found by ops/schemathesis.sh (`--checks all`): `PATCH /api/v1/servers/server_master`
    /// with the body `[null, null]` was a 200.
    #[tokio::test]
    async fn a_body_that_is_not_an_object_is_a_422_problem() {
        for body in ["[null, null]", " [\"h\", 1]", "null", "3", "\"x\""] {
            let (status, ct) = post(body).await;
            assert!(
                status == StatusCode::UNPROCESSABLE_ENTITY,
                "{body}: {status}"
            );
            assert_eq!(ct, "application/problem+json", "{body}");
        }
        assert_eq!(post("{\"port\": 8080}").await.0, StatusCode::OK);
        assert_eq!(post(" {}").await.0, StatusCode::OK);
        assert_eq!(post("{").await.0, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn other_queries_still_parse() {
        let (status, _, body) = call("/q?client=a%20b&x=%C3%A9").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "a b,é");
    }
}
