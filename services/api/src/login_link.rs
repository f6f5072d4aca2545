//! A site's one-time login link, asked of the site's own database: spent once its admin
//! has logged in after the link was made.

use crate::AppState;
use berth_store::sites;

/// Whether the site's admin has logged in since its login link was made (so the link is
/// spent), asked of the site's own database with the site's credentials. Any failure to
/// ask leaves the link shown: it expires after 24 hours all the same.
pub async fn spent(state: &AppState, uri: &str) -> bool {
    use berth_hosting::sites::login;
    use sqlx::{ConnectOptions, Connection};
    let ask = async {
        let mut conn = state.store.pool.acquire().await.ok()?;
        let row = sites::get_site(&mut conn, uri).await.ok()??;
        let facts = sites::facts(&mut conn, uri).await.ok()??;
        drop(conn);
        let ts = login::timestamp(row.login_link.as_deref()?)?;
        let db = facts.db_server.db.as_ref()?;
        let password = state.secret_key.open(&row.db_password_sealed).ok()?;
        let mut my = sqlx::mysql::MySqlConnectOptions::new()
            .host(&db.host)
            .port(db.port)
            .username(&row.db_user)
            .password(&password)
            .database(&row.db_name)
            .log_statements(tracing::log::LevelFilter::Off)
            .connect()
            .await
            .ok()?;
        let (last,): (i64,) = sqlx::query_as(login::last_login_sql(facts.platform.drupal_major))
            .fetch_one(&mut my)
            .await
            .ok()?;
        let _ = my.close().await;
        Some(login::spent(ts, last))
    };
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(2), ask).await,
        Ok(Some(true))
    )
}
