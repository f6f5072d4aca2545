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

/// A request for the site's cron to its vhost on this web server (`address`: where the
/// vhosts listen; loopback when they listen everywhere), with the site's name as `Host`
/// and the key in a header: the vhost gives PHP Drupal's own cron URL with the key, and no
/// request line (what nginx logs) holds it. Redirects are not followed. A vhost written
/// before berth had that location (it does not answer [`cron::ANSWERED_HEADER`]) gets
/// Drupal's URL itself, and the run is a warning saying to verify the site: `Ok(true)`.
pub async fn by_http(
    spec: &SiteSpec,
    address: &str,
    key: &str,
    ctx: &StepContext,
) -> Result<bool, StepError> {
    let host = if address.is_empty() {
        "127.0.0.1"
    } else {
        address
    };
    let base = format!("http://{host}:{}", spec.http.port);
    // What the task log shows: Drupal's URL, as the site saw it, without the key.
    let shown = cron::drupal_url(spec.drupal_major);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HTTP_CRON_TIMEOUT)
        .no_proxy()
        .build()
        .map_err(|e| StepError::permanent(format!("HTTP client: {e}")))?;
    let get = |url: String, with_header: bool| {
        let mut req = client.get(url).header(reqwest::header::HOST, &spec.uri);
        if with_header {
            req = req.header(cron::KEY_HEADER, key);
        }
        async move {
            req.send().await.map_err(|e| {
                // reqwest's errors may name the URL: masked.
                StepError::transient(format!(
                    "cron over HTTP: GET {shown} as {} on {host}: {}",
                    spec.uri,
                    berth_command::mask(&e.to_string(), &[key])
                ))
            })
        }
    };
    let mut answer = get(
        format!("{base}{}", cron::berth_path(spec.drupal_major)),
        true,
    )
    .await?;
    let old_vhost = !answer.headers().contains_key(cron::ANSWERED_HEADER);
    if old_vhost {
        ctx.warn(format!(
            "the vhost of {} predates berth's cron location, so the cron key went in the \
             URL, which nginx logs: verify the site to rewrite its vhost",
            spec.uri
        ));
        answer = get(
            format!("{base}{}", cron::drupal_url_with(spec.drupal_major, key)),
            false,
        )
        .await?;
    }
    let status = answer.status();
    if cron::succeeded(status.as_u16()) {
        ctx.info(format!(
            "cron over HTTP: GET {shown} as {} answered {status}",
            spec.uri
        ));
        return Ok(old_vhost);
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
