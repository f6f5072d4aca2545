//! What the notices service remembers beyond webhook deliveries: the welcome mails sent.

use crate::Result;
use sqlx::PgConnection;
use uuid::Uuid;

/// Whether the welcome of this `site.installed` notice was sent.
pub async fn welcome_sent(conn: &mut PgConnection, notice: Uuid) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM welcome_mails WHERE notice_id = $1)")
            .bind(notice)
            .fetch_one(conn)
            .await?,
    )
}

/// The relay accepted the welcome of this notice.
pub async fn record_welcome(
    conn: &mut PgConnection,
    notice: Uuid,
    site: &str,
    to: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO welcome_mails (notice_id, site, sent_to) VALUES ($1, $2, $3)
         ON CONFLICT (notice_id) DO NOTHING",
    )
    .bind(notice)
    .bind(site)
    .bind(to)
    .execute(conn)
    .await?;
    Ok(())
}
