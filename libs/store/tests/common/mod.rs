//! A fresh PostgreSQL database with berth's migrations for a store test
//! (BERTH_TEST_DATABASE_URL, default the local one), dropped at the end of the test.

use berth_store::Store;
use sqlx::Connection;
use uuid::Uuid;

fn admin_url() -> String {
    std::env::var("BERTH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct Db {
    name: String,
    pub store: Store,
}

impl Db {
    /// A new database named after `what` (the test's subject) and a random suffix.
    pub async fn new(what: &str) -> Self {
        let name = format!(
            "berth_test_{what}_{}",
            &Uuid::new_v4().simple().to_string()[..12]
        );
        let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let url = match admin_url().rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => unreachable!(),
        };
        let store = Store::connect(&url, 4).await.unwrap();
        Self { name, store }
    }

    pub async fn drop(self) {
        self.store.pool.close().await;
        let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    }

    pub async fn exec(&self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.store.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&self.store.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}
