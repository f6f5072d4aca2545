//! [`VisibleSite`]: the one way a handler under `/sites/{uri}` reaches a site. It reads the
//! path's uri and the caller, and fetches the site through a query that filters on the
//! caller's client: a site of another client is a 404 exactly like a site that does not
//! exist, and a handler that takes a `VisibleSite` cannot forget to check.

use crate::AppState;
use crate::error::ApiError;
use crate::guard::Caller;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use berth_hosting::HostName;
use berth_store::sites::{self, SiteRow};

pub struct VisibleSite(pub SiteRow);

impl FromRequestParts<AppState> for VisibleSite {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthorized)?;
        let Path(params) = Path::<Vec<(String, String)>>::from_request_parts(parts, state).await?;
        let uri = params
            .iter()
            .find(|(k, _)| k == "uri")
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| ApiError::Internal("VisibleSite on a route without {uri}".into()))?;
        let uri = uri.strip_prefix('@').unwrap_or(uri);
        let uri = HostName::normalise(uri).map_err(|e| ApiError::NotFound(e.to_string()))?;
        let mut conn = state.store.pool.acquire().await?;
        sites::get_visible_site(&mut conn, uri.as_str(), caller.visibility())
            .await?
            .map(VisibleSite)
            .ok_or_else(|| ApiError::NotFound(format!("site `{uri}` not found")))
    }
}
