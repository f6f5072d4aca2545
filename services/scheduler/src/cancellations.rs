//! Cancelled clients: once a client's grace has passed, the delete of each of its sites is
//! queued (each takes a backup first, which stays), once, whichever scheduler gets there:
//! the client's row is locked (`SKIP LOCKED`) and marked in the transaction that writes the
//! tasks and their outbox rows.

use crate::SchedulerError;
use berth_hosting::fresh::Fresh;
use berth_hosting::tasks::TaskType;
use berth_store::Store;
use berth_store::clients;
use berth_store::outbox::OutboxRow;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Queues the deletes of the sites of cancelled clients whose grace ended by `now`; returns
/// the outbox rows to publish after commit.
pub async fn delete_due(
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Vec<OutboxRow>, SchedulerError> {
    let mut tx = store.pool.begin().await?;
    let due = clients::due_cancellations(&mut tx, now).await?;
    let mut messages = Vec::new();
    for client in &due {
        for (uri, guarded) in clients::serving_sites(&mut tx, client.id).await? {
            // Guarded after the cancellation (it refuses guarded sites): left to an operator.
            if guarded {
                tracing::warn!(client = %client.name, site = %uri,
                    "a cancelled client's site is guarded: it is not deleted");
                continue;
            }
            let id = Uuid::now_v7();
            let span = tracing::info_span!("client.cancelled", task_id = %id, client = %client.name, site = %uri);
            let message = crate::queue_site_task(
                &mut tx,
                &span,
                id,
                TaskType::Delete,
                &uri,
                &Fresh::new().delete(&uri),
                &format!("client-cancelled:{}", client.name),
            )
            .await?;
            span.in_scope(|| tracing::info!("site delete queued: its client's grace ended"));
            messages.push(message);
        }
        clients::mark_sites_deleted(&mut tx, client.id).await?;
    }
    tx.commit().await?;
    Ok(messages)
}
