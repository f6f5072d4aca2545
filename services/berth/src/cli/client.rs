//! The client of the berth REST API: requests, problem+json answers as errors, and the
//! errors every command can end with (printed `error: …` by main, exit 1).
//! The token is sent only in the `Authorization` header and never printed.

use berth_contracts::Problem;
use serde_json::Value;
use std::fmt::Write as _;
use std::time::Duration;

pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8080";

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The API answered with a problem.
    #[error("{title}: {detail}{hint}")]
    Problem {
        title: String,
        detail: String,
        /// A line of advice, starting with a newline; may be empty.
        hint: String,
    },
    #[error(
        "the berth API is not reachable at {url} (connection refused or no such host).\n\
         Start it with `berth serve all` (or `sudo ops/run.sh` for the whole system), or point \
         BERTH_API_URL / --api-url at a running API."
    )]
    Unreachable { url: String },
    #[error("the berth API at {url} did not answer in time")]
    Timeout { url: String },
    #[error("talking to the berth API at {url}: {error}")]
    Http { url: String, error: String },
    #[error("unexpected answer from the berth API ({what}): {error}")]
    BadAnswer { what: String, error: String },
    #[error("{0}")]
    Usage(String),
}

pub(crate) fn usage(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// The problem+json answer as an error, with advice where there is an obvious fix.
fn problem_error(status: u16, body: &[u8]) -> CliError {
    let (title, detail) = match serde_json::from_slice::<Problem>(body) {
        Ok(p) => (p.title, p.detail.unwrap_or_default()),
        Err(_) => (
            format!("HTTP {status}"),
            String::from_utf8_lossy(body).chars().take(300).collect(),
        ),
    };
    let hint = match status {
        401 => "\nhint: set BERTH_TOKEN to a valid token; make one with `berth token create --name NAME` \
                where BERTH_DATABASE_URL reaches the API's database"
            .to_string(),
        _ => String::new(),
    };
    CliError::Problem {
        title,
        detail,
        hint,
    }
}

// ---------------------------------------------------------------------------------------
// The API client
// ---------------------------------------------------------------------------------------

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// Percent-encodes one path segment (a server name, say) so that it stays one segment.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    if out == "." || out == ".." {
        out = out.replace('.', "%2E");
    }
    out
}

impl Client {
    /// A client of the API at `api_url` (`--api-url`), sending `token` (`--token`).
    pub fn new(api_url: &str, token: Option<&str>) -> Result<Self, CliError> {
        let token = token.filter(|t| !t.trim().is_empty()).map(str::to_owned).ok_or_else(|| {
            usage(
                "BERTH_TOKEN is not set: set it (or pass --token) to an API token; make one with \
                 `berth token create --name NAME`",
            )
        })?;
        let base = api_url.trim().trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(usage(format!(
                "BERTH_API_URL / --api-url `{base}` must begin with http:// or https://, e.g. {DEFAULT_API_URL}"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("berth-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Http {
                url: base.clone(),
                error: e.to_string(),
            })?;
        Ok(Self { base, token, http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// Sends a request; the JSON answer, or `None` for 204.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, CliError> {
        let url = self.url(path);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(|e| self.transport_error(e))?;
        if !status.is_success() {
            return Err(problem_error(status.as_u16(), &bytes));
        }
        if status == reqwest::StatusCode::NO_CONTENT || bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CliError::BadAnswer {
                what: path.to_string(),
                error: e.to_string(),
            })
    }

    fn transport_error(&self, e: reqwest::Error) -> CliError {
        if e.is_connect() {
            CliError::Unreachable {
                url: self.base.clone(),
            }
        } else if e.is_timeout() {
            CliError::Timeout {
                url: self.base.clone(),
            }
        } else {
            CliError::Http {
                url: self.base.clone(),
                // Without the URL reqwest adds: ours is already in the message.
                error: e.without_url().to_string(),
            }
        }
    }

    pub(crate) async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, CliError> {
        self.send(reqwest::Method::GET, path, query, None)
            .await?
            .ok_or_else(|| CliError::BadAnswer {
                what: path.to_string(),
                error: "empty body".into(),
            })
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(reqwest::Method::POST, path, &[], Some(body))
            .await?
            .ok_or_else(|| CliError::BadAnswer {
                what: path.to_string(),
                error: "empty body".into(),
            })
    }

    pub(crate) async fn patch(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(reqwest::Method::PATCH, path, &[], Some(body))
            .await?
            .ok_or_else(|| CliError::BadAnswer {
                what: path.to_string(),
                error: "empty body".into(),
            })
    }

    /// A resource, or `None` where the API answers 404.
    pub(crate) async fn find(&self, path: &str) -> Result<Option<Value>, CliError> {
        match self.get(path, &[]).await {
            Ok(v) => Ok(Some(v)),
            Err(CliError::Problem { title, .. }) if title == "Not found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<(), CliError> {
        self.send(reqwest::Method::DELETE, path, &[], None).await?;
        Ok(())
    }
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, CliError> {
    serde_json::from_value(v).map_err(|e| CliError::BadAnswer {
        what: what.to_string(),
        error: e.to_string(),
    })
}

/// A context name as Aegir writes it (`@server_master`) without its `@`.
pub(crate) fn bare(name: &str) -> &str {
    name.strip_prefix('@').unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_print_title_and_detail() {
        let body = br#"{"type":"https://berth.dev/problems/not-found","title":"Not found","status":404,"detail":"task 1 not found"}"#;
        assert_eq!(
            problem_error(404, body).to_string(),
            "Not found: task 1 not found"
        );
        let e = problem_error(401, br#"{"type":"x","title":"Authentication required","status":401,"detail":"missing or invalid bearer token"}"#).to_string();
        assert!(
            e.starts_with("Authentication required: missing or invalid bearer token"),
            "{e}"
        );
        assert!(e.contains("berth token create"), "{e}");
        assert_eq!(
            problem_error(502, b"bad gateway").to_string(),
            "HTTP 502: bad gateway"
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("server_master"), "server_master");
        assert_eq!(segment("../tasks"), "..%2Ftasks");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("a b?"), "a%20b%3F");
    }
}
