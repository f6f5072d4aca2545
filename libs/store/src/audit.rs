//! The audit log: one row per mutating API request (who, what, the answer, the task it
//! queued). Never a body, never a secret.

use crate::{Result, Store};
use berth_contracts::Page;
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use uuid::Uuid;

#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub token_id: Option<Uuid>,
    pub token_name: Option<String>,
    pub client_id: Option<Uuid>,
    pub client: Option<String>,
    pub method: String,
    pub path: String,
    pub resource: String,
    pub idempotency_key: Option<String>,
    pub status: i32,
    pub task_id: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub token_id: Option<Uuid>,
    pub token_name: Option<String>,
    pub client_id: Option<Uuid>,
    pub client: Option<String>,
    pub method: String,
    pub path: String,
    pub resource: String,
    pub idempotency_key: Option<String>,
    pub status: u16,
    pub task_id: Option<Uuid>,
}

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub since: Option<DateTime<Utc>>,
    pub token: Option<Uuid>,
    pub client: Option<String>,
    pub path_prefix: Option<String>,
    pub status: Option<i32>,
    pub limit: i64,
    pub offset: i64,
}

impl Store {
    pub async fn write_audit(&self, e: &NewAuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (token_id, token_name, client_id, client, method, path,
                                    resource, idempotency_key, status, task_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(e.token_id)
        .bind(&e.token_name)
        .bind(e.client_id)
        .bind(&e.client)
        .bind(&e.method)
        .bind(&e.path)
        .bind(&e.resource)
        .bind(&e.idempotency_key)
        .bind(i32::from(e.status))
        .bind(e.task_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Page<AuditEntry>> {
        fn filtered(qb: &mut QueryBuilder<sqlx::Postgres>, f: &AuditFilter) {
            qb.push(" WHERE true");
            if let Some(s) = f.since {
                qb.push(" AND at >= ").push_bind(s);
            }
            if let Some(t) = f.token {
                qb.push(" AND token_id = ").push_bind(t);
            }
            if let Some(c) = &f.client {
                qb.push(" AND client = ").push_bind(c.clone());
            }
            if let Some(p) = &f.path_prefix {
                // A prefix, not a pattern: `%` and `_` in it match themselves.
                qb.push(" AND starts_with(path, ")
                    .push_bind(p.clone())
                    .push(")");
            }
            if let Some(s) = f.status {
                qb.push(" AND status = ").push_bind(s);
            }
        }
        let mut count = QueryBuilder::new("SELECT count(*) FROM audit_log");
        filtered(&mut count, f);
        let (total,): (i64,) = count.build_query_as().fetch_one(&self.pool).await?;
        let mut qb = QueryBuilder::new(
            "SELECT id, at, token_id, token_name, client_id, client, method, path, resource,
                    idempotency_key, status, task_id FROM audit_log",
        );
        filtered(&mut qb, f);
        qb.push(" ORDER BY at DESC, id DESC LIMIT ")
            .push_bind(f.limit)
            .push(" OFFSET ")
            .push_bind(f.offset);
        let items: Vec<AuditEntry> = qb.build_query_as().fetch_all(&self.pool).await?;
        Ok(Page {
            items,
            total,
            limit: f.limit,
            offset: f.offset,
        })
    }
}
