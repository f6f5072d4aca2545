//! The welcome mail (Aegir e-mails a new site's client its one-time login link): for each
//! `site.installed` notice (queue `notices.mail`), a plain-text mail through the SMTP relay
//! (`BERTH_SMTP_URL`) to the client's e-mail, else the site's `client_email`. A notice is
//! mailed once (`welcome_mails`, written after the relay accepted it); a relay that fails
//! puts the notice back to be tried again. Without a relay nothing is consumed. The same
//! notice reaches webhooks as `site.installed`, with the link: the welcome's webhook half.

use crate::NoticesError;
use berth_broker::topology::{MAIL_QUEUE, Topology};
use berth_broker::{Broker, ConsumeOptions, Delivery, HandlerError, consume_with};
use berth_contracts::{Notice, NoticeEvent};
use berth_mail::{Mailbox, Mailer, Welcome, mailbox};
use berth_store::Store;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct MailConfig {
    /// The relay (BERTH_SMTP_URL); `None`: no mail is sent.
    pub relay: Option<String>,
    /// The sender (BERTH_MAIL_FROM).
    pub from: String,
}

struct Ctx {
    store: Store,
    mailer: Mailer,
    from: Mailbox,
}

/// Sends welcome mails until `shutdown`; returns at once when no relay is configured.
pub async fn run(
    database_url: &str,
    amqp_url: &str,
    cfg: MailConfig,
    shutdown: CancellationToken,
) -> Result<(), NoticesError> {
    let Some(relay) = cfg.relay else {
        tracing::info!("welcome mail off: BERTH_SMTP_URL is not set");
        return Ok(());
    };
    let ctx = Arc::new(Ctx {
        store: Store::connect(database_url, 4).await?,
        mailer: Mailer::new(&relay)?,
        from: mailbox(&cfg.from)?,
    });
    tracing::info!(from = %cfg.from, "welcome mail on");
    let broker = Broker::new(amqp_url);
    consume_with(
        &broker,
        ConsumeOptions::new(vec![MAIL_QUEUE.into()], 4, Topology::core()),
        shutdown,
        move |d| on_installed(ctx.clone(), d),
    )
    .await?;
    Ok(())
}

async fn on_installed(ctx: Arc<Ctx>, d: Delivery) -> Result<(), HandlerError> {
    let notice: Notice = serde_json::from_slice(&d.body)
        .map_err(|e| HandlerError::Reject(format!("unreadable notice: {e}")))?;
    let NoticeEvent::SiteInstalled {
        site,
        client,
        client_email,
        login_link,
        ..
    } = &notice.event
    else {
        return Ok(());
    };
    let retry = |e: berth_store::StoreError| HandlerError::Retry(e.to_string());
    let mut conn = ctx
        .store
        .pool
        .acquire()
        .await
        .map_err(|e| HandlerError::Retry(e.to_string()))?;
    if berth_store::notices::welcome_sent(&mut conn, notice.id)
        .await
        .map_err(retry)?
    {
        return Ok(());
    }
    let client_id = client.as_deref().and_then(|c| c.parse().ok());
    let owner = match client_id {
        Some(id) => berth_store::clients::get_by_id(&mut conn, id)
            .await
            .map_err(retry)?,
        None => None,
    };
    let Some((to, name)) = recipient(owner.as_ref(), client_email.as_deref()) else {
        tracing::info!(%site, "no welcome mail: neither the client nor the site has an e-mail");
        return Ok(());
    };
    let Some(link) = login_link else {
        tracing::warn!(%site, "no welcome mail: the install made no login link");
        return Ok(());
    };
    let to_box = match mailbox(&to) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(%site, error = %e, "no welcome mail: the address does not read");
            return Ok(());
        }
    };
    let expires = notice.at + chrono::Duration::hours(berth_store::sites::LOGIN_LINK_TTL_HOURS);
    let message = berth_mail::welcome(
        &ctx.from,
        &to_box,
        &Welcome {
            site,
            client: &name,
            login_link: link,
            link_expires_at: Some(expires),
        },
    )
    .map_err(|e| HandlerError::Reject(e.to_string()))?;
    // The link is a credential: never logged (the address and the site are).
    ctx.mailer.send(message).await.map_err(|e| {
        tracing::warn!(%site, error = %e, "welcome mail not accepted by the relay; trying again");
        HandlerError::Retry(e.to_string())
    })?;
    berth_store::notices::record_welcome(&mut conn, notice.id, site, &to)
        .await
        .map_err(retry)?;
    tracing::info!(%site, to = %to, "welcome mail sent");
    Ok(())
}

/// Who the welcome goes to, and the name it greets: the client's e-mail, else the site's
/// `client_email`.
fn recipient(
    owner: Option<&berth_store::clients::ClientRow>,
    site_email: Option<&str>,
) -> Option<(String, String)> {
    let name = owner
        .map(|c| c.name.clone())
        .unwrap_or_else(|| "there".into());
    owner
        .and_then(|c| c.email.clone())
        .or_else(|| site_email.map(str::to_string))
        .filter(|e| !e.trim().is_empty())
        .map(|e| (e, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_welcome_goes_to_the_client_else_the_sites_address() {
        let mut c: berth_store::clients::ClientRow = serde_free_client();
        assert_eq!(
            recipient(Some(&c), Some("site@example.com")),
            Some(("owner@example.com".into(), "acme".into()))
        );
        c.email = None;
        assert_eq!(
            recipient(Some(&c), Some("site@example.com")),
            Some(("site@example.com".into(), "acme".into()))
        );
        assert_eq!(recipient(Some(&c), None), None);
        assert_eq!(recipient(None, Some(" ")), None);
    }

    fn serde_free_client() -> berth_store::clients::ClientRow {
        berth_store::clients::ClientRow {
            id: uuid::Uuid::nil(),
            name: "acme".into(),
            email: Some("owner@example.com".into()),
            storefront: None,
            external_ref: None,
            status: "active".into(),
            max_sites: None,
            max_disk_bytes: None,
            max_backup_bytes: None,
            cancel_after: None,
            sites_deleted_at: None,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }
}
