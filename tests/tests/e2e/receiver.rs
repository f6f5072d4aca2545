//! A webhook receiver for tests: a real HTTP server on loopback that records what it gets,
//! answers scripted statuses, and checks Standard Webhooks signatures with its own HMAC
//! (hmac, sha2, base64 from the spec; not berth's code).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit as _, Mac as _};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) at: Instant,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

/// A receiver: each path answers the statuses scripted for it in turn, then 200; a 503
/// carries `Retry-After: 2`; a scripted 0 holds the request 3 s, then answers 200.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    got: Arc<Mutex<HashMap<String, Vec<Received>>>>,
    script: Arc<Mutex<HashMap<String, Vec<u16>>>>,
}

impl Receiver {
    pub(crate) async fn start() -> (Self, String) {
        let r = Self::default();
        let app = axum::Router::new()
            .route("/{path}", axum::routing::post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, base)
    }

    pub(crate) fn script(&self, path: &str, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .insert(path.into(), statuses.to_vec());
    }

    pub(crate) fn got(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .unwrap()
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `path` received `n` requests.
    pub(crate) async fn wait_for(&self, path: &str, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.got(path);
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{path} received {} of {n} requests within {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    r.got
        .lock()
        .unwrap()
        .entry(path.clone())
        .or_default()
        .push(Received {
            at: Instant::now(),
            headers,
            body,
        });
    let status = {
        let mut script = r.script.lock().unwrap();
        match script.get_mut(&path) {
            Some(s) if !s.is_empty() => s.remove(0),
            _ => 200,
        }
    };
    let status = if status == 0 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        StatusCode::OK
    } else {
        StatusCode::from_u16(status).unwrap()
    };
    if status == StatusCode::SERVICE_UNAVAILABLE {
        (status, [("retry-after", "2")], "busy").into_response()
    } else {
        (status, "").into_response()
    }
}

/// The Standard Webhooks check, written here from the spec with hmac, sha2 and base64
/// (not berth's code): the key is the base64 after `whsec_`, the signed content
/// `id.timestamp.body`, the header holds space-separated `v1,<base64>` signatures.
pub(crate) fn signed_by(secret: &str, got: &Received) -> bool {
    let key = B64
        .decode(secret.strip_prefix("whsec_").expect("a whsec_ secret"))
        .unwrap();
    let h = |name: &str| got.headers.get(name).unwrap().to_str().unwrap().to_string();
    let content = format!(
        "{}.{}.{}",
        h("webhook-id"),
        h("webhook-timestamp"),
        got.body
    );
    let mut mac = hmac::Hmac::<sha2_011::Sha256>::new_from_slice(&key).unwrap();
    mac.update(content.as_bytes());
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    h("webhook-signature").split(' ').any(|s| s == expected)
}
