//! A site's cron: giving the site its cron key, and running cron by drush or over HTTP
//! through the site's own vhost.

use crate::site::{self, SiteArgs};
use berth_broker::worker::{StepContext, StepError};
use berth_contracts::steps::SiteSpec;
use berth_hosting::sites::cron;
use std::time::Duration;

/// The longest an HTTP cron may take (Drupal's own cron lock lasts 15 minutes… for a
/// hung request the worker stops waiting sooner).
const HTTP_CRON_TIMEOUT: Duration = Duration::from_secs(600);
/// How much of a failed answer's body goes to the task log.
const BODY_SHOWN: usize = 300;

/// Writes the key where Drupal keeps it, through drush reading it from standard input:
/// never in argv.
pub async fn give_key(
    a: &SiteArgs,
    password: &str,
    key: &str,
    ctx: &StepContext,
) -> Result<(), StepError> {
    let args: &[&str] = if a.drupal_major <= 7 {
        &["variable-set", "cron_key", "-"]
    } else {
        &["state:set", "system.cron_key", "-"]
    };
    site::drush_with_input(a, password, args, Some(key), ctx).await?;
    ctx.info("the site holds its cron key");
    Ok(())
}

/// `drush cron`, as the site's user with its credentials in the environment.
pub async fn by_drush(a: &SiteArgs, password: &str, ctx: &StepContext) -> Result<(), StepError> {
    site::drush(a, password, &["cron"], ctx).await?;
    ctx.info("drush cron ran");
    Ok(())
}

/// A request to the site's cron URL on this web server (`address`: where the vhosts
/// listen; loopback when they listen everywhere), with the site's name as `Host`. The
/// key is in the URL, so nothing here logs the URL unmasked; redirects are not followed.
pub async fn by_http(
    spec: &SiteSpec,
    address: &str,
    key: &str,
    ctx: &StepContext,
) -> Result<(), StepError> {
    let path = cron::url_path(spec.drupal_major, key);
    let host = if address.is_empty() {
        "127.0.0.1"
    } else {
        address
    };
    let url = format!("http://{host}:{}{path}", spec.http.port);
    let shown = berth_command::mask(&path, &[key]);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_CRON_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| StepError::permanent(format!("HTTP client: {e}")))?;
    let answer = client
        .get(&url)
        .header(reqwest::header::HOST, &spec.uri)
        .send()
        .await
        // reqwest's errors name the URL: masked.
        .map_err(|e| {
            StepError::transient(format!(
                "cron over HTTP: GET {shown} as {} on {host}: {}",
                spec.uri,
                berth_command::mask(&e.to_string(), &[key])
            ))
        })?;
    let status = answer.status();
    if cron::succeeded(status.as_u16()) {
        ctx.info(format!(
            "cron over HTTP: GET {shown} as {} answered {status}",
            spec.uri
        ));
        return Ok(());
    }
    let body = answer.text().await.unwrap_or_default();
    let body: String = berth_command::mask(body.trim(), &[key])
        .chars()
        .take(BODY_SHOWN)
        .collect();
    Err(StepError::permanent(format!(
        "cron over HTTP: GET {shown} as {} answered {status}{}",
        spec.uri,
        if body.is_empty() {
            String::new()
        } else {
            format!(": {body}")
        }
    )))
}
