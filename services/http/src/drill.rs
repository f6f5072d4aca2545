//! A restore drill's check: the drill site and the site it was restored from, both
//! requested through this web server's nginx by name, compared by
//! `berth_hosting::drills::check`.

use berth_broker::worker::{StepContext, StepError, StepOk};
use berth_contracts::StepOutput;
use berth_contracts::steps::DrillCheckSpec;
use berth_hosting::drills::{self, Page};
use std::time::Duration;

/// A front page that takes longer than this is not served.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most of a page read (a front page, not a download).
const PAGE_MAX: usize = 1 << 20;

/// `address`: where the vhosts listen (loopback when they listen everywhere).
pub async fn check(
    spec: &DrillCheckSpec,
    address: &str,
    ctx: &StepContext,
) -> Result<StepOk, StepError> {
    let host = if address.is_empty() {
        "127.0.0.1"
    } else {
        address
    };
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PAGE_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| StepError::permanent(format!("HTTP client: {e}")))?;
    let original = front_page(&client, host, spec.original.http.port, &spec.original.uri).await?;
    let drill = front_page(&client, host, spec.drill.http.port, &spec.drill.uri).await?;
    ctx.info(format!(
        "GET / as {} answered {}; as {} (the restored copy) answered {}",
        spec.original.uri, original.status, spec.drill.uri, drill.status
    ));
    match drills::check(&original, &drill) {
        Ok(title) => {
            ctx.info(format!(
                "the restored copy of backup {} serves the site's own front page (\"{title}\")",
                spec.backup
            ));
            Ok(StepOk::new(StepOutput::DrillPassed {
                backup: spec.backup,
                title,
            }))
        }
        Err(why) => Err(StepError::permanent(format!(
            "drill of backup {} failed: {why}",
            spec.backup
        ))),
    }
}

/// `GET /` with `uri` as `Host`, on this web server; a request that does not complete is
/// worth retrying (nginx reloading), an answer is compared.
async fn front_page(
    client: &reqwest::Client,
    host: &str,
    port: u16,
    uri: &str,
) -> Result<Page, StepError> {
    let url = format!("http://{host}:{port}/");
    let answer = client
        .get(&url)
        .header(reqwest::header::HOST, uri)
        .send()
        .await
        .map_err(|e| StepError::transient(format!("GET / as {uri} on {host}:{port}: {e}")))?;
    let status = answer.status().as_u16();
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| StepError::transient(format!("GET / as {uri}: reading the page: {e}")))?;
    let body = String::from_utf8_lossy(&bytes[..bytes.len().min(PAGE_MAX)]).into_owned();
    Ok(Page { status, body })
}
