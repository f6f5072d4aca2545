//! A site's database user reaches its own database and nothing else. Two sites are
//! installed through the real path (the db worker makes their databases, users and grants
//! on MariaDB); site A's user, with the password from its vhost, connects from both hosts
//! it is granted at (`localhost` through the socket, `127.0.0.1` over TCP) and can work in
//! its own database, but cannot see, read, write or enter site B's database nor `mysql`,
//! create a database or a user, or grant anything to anyone.

use berth_contracts::TaskStatus;
use berth_tests::TASK_WAIT as WAIT;
use berth_tests::{World, WorldOptions, my_exec, mysql_admin};
use serde_json::{Value, json};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, Connection, Row};

/// Runs `sql` and expects MariaDB to refuse it for lack of privileges.
async fn refused(conn: &mut MySqlConnection, sql: &str, as_who: &str) {
    let e = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *conn)
        .await
        .err()
        .unwrap_or_else(|| panic!("{as_who} was allowed: {sql}"));
    let code = e
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|m| m.number())
        .unwrap_or_else(|| panic!("{as_who}: {sql}: not a refusal: {e}"));
    // 1044 access denied to a database, 1142 command denied on a table, 1227 needs a
    // privilege (CREATE USER, SUPER…), 1410 not allowed to grant.
    assert!(
        [1044, 1142, 1227, 1410].contains(&code),
        "{as_who}: {sql}: refused for another reason ({code}): {e}"
    );
}

async fn strings(conn: &mut MySqlConnection, sql: &str) -> Vec<String> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sites_database_user_reaches_only_its_own_database_from_both_grant_hosts() {
    let w = World::with_platform(WorldOptions::web(false)).await;
    let (uri_a, uri_b) = (format!("a.{}.test", w.id), format!("b.{}.test", w.id));
    let a = w.installed_on_platform(&uri_a).await;
    let b = w.installed_on_platform(&uri_b).await;
    let (db_a, user_a) = (
        a["db_name"].as_str().unwrap(),
        a["db_user"].as_str().unwrap(),
    );
    let (db_b, user_b) = (
        b["db_name"].as_str().unwrap(),
        b["db_user"].as_str().unwrap(),
    );
    assert_ne!(db_a, db_b);
    // Site A as a site installed before database names were escaped in grants: `_` is a
    // wildcard there, so its grant covered every lookalike name. Its verify puts it right.
    let mut root = <MySqlConnection as Connection>::connect(&berth_tests::mysql_url())
        .await
        .unwrap();
    for host in ["localhost", "127.0.0.1"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "GRANT ALL PRIVILEGES ON `{db_a}`.* TO '{user_a}'@'{host}'"
        )))
        .execute(&mut root)
        .await
        .unwrap();
    }
    let v = w.run("verify", &uri_a, json!({})).await;
    assert!(
        matches!(v.status, TaskStatus::Success | TaskStatus::Warning),
        "{v:#?}"
    );
    assert!(
        v.log.as_ref().unwrap().iter().any(|l| l
            .message
            .contains("had a grant on every database named like")),
        "{v:#?}"
    );
    let password = w.vhost_password(&uri_a);
    let admin = mysql_admin();
    // The server's socket, where `'user'@'localhost'` logs in.
    let socket: String = sqlx::query_scalar("SELECT @@socket")
        .fetch_one(&mut root)
        .await
        .unwrap();

    for (host, opts) in [
        (
            "localhost",
            MySqlConnectOptions::new()
                .socket(&socket)
                .username(user_a)
                .password(&password),
        ),
        (
            "127.0.0.1",
            MySqlConnectOptions::new()
                .host("127.0.0.1")
                .port(admin.port)
                .username(user_a)
                .password(&password),
        ),
    ] {
        let who = format!("{user_a}@{host}");
        let mut my = opts
            .disable_statement_logging()
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{who} cannot log in: {e}"));
        // The account that matched is the one granted at this host.
        let current = strings(&mut my, "SELECT CURRENT_USER()").await;
        assert_eq!(
            current,
            std::slice::from_ref(&who),
            "logged in as another account"
        );

        // Its own database: the site's tables are there, and it may change them.
        let tables = strings(
            &mut my,
            &format!(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = '{db_a}'"
            ),
        )
        .await;
        assert!(tables.iter().any(|t| t == "config"), "{who}: {tables:?}");
        let probe = format!("`{db_a}`.berth_probe_{}", host.replace('.', "_"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {probe} (x int); INSERT INTO {probe} VALUES (1); DROP TABLE {probe}"
        )))
        .execute(&mut my)
        .await
        .unwrap_or_else(|e| panic!("{who} cannot work in its own database: {e}"));

        // It sees no other database.
        let mut visible = strings(&mut my, "SHOW DATABASES").await;
        visible.sort();
        let mut own = vec![db_a.to_string(), "information_schema".to_string()];
        own.sort();
        assert_eq!(visible, own, "{who} sees other databases");
        let others = strings(
            &mut my,
            &format!(
                "SELECT table_name FROM information_schema.tables WHERE table_schema IN ('{db_b}', 'mysql')"
            ),
        )
        .await;
        assert!(others.is_empty(), "{who} sees tables of others: {others:?}");

        // Site B's database: not read, not written, not entered.
        refused(&mut my, &format!("SELECT * FROM `{db_b}`.config"), &who).await;
        refused(
            &mut my,
            &format!("UPDATE `{db_b}`.config SET data = '' WHERE name = 'system.site'"),
            &who,
        )
        .await;
        refused(
            &mut my,
            &format!("CREATE TABLE `{db_b}`.planted (x int)"),
            &who,
        )
        .await;
        refused(&mut my, &format!("DROP TABLE `{db_b}`.config"), &who).await;
        refused(&mut my, &format!("USE `{db_b}`"), &who).await;
        refused(&mut my, &format!("DROP DATABASE `{db_b}`"), &who).await;
        // MariaDB's own tables.
        refused(&mut my, "SELECT * FROM mysql.user", &who).await;
        refused(&mut my, "SELECT * FROM mysql.global_priv", &who).await;
        refused(&mut my, "SELECT * FROM mysql.db", &who).await;
        refused(&mut my, "UPDATE mysql.global_priv SET priv = '{}'", &who).await;
        // No new database, no new user, no grant: not even on its own database.
        refused(&mut my, &format!("CREATE DATABASE `{db_a}_more`"), &who).await;
        // `_` and `%` are wildcards in a grant's database name: the grant must be of its
        // own database only, not of every name that pattern matches.
        let lookalike = db_a.replace('_', "x");
        assert_ne!(lookalike, db_a);
        refused(&mut my, &format!("CREATE DATABASE `{lookalike}`"), &who).await;
        refused(
            &mut my,
            "CREATE USER 'berth_intruder'@'%' IDENTIFIED BY 'x'",
            &who,
        )
        .await;
        refused(
            &mut my,
            &format!("GRANT SELECT ON `{db_a}`.* TO '{user_b}'@'localhost'"),
            &who,
        )
        .await;
        refused(
            &mut my,
            &format!("GRANT ALL PRIVILEGES ON `{db_b}`.* TO '{user_a}'@'{host}'"),
            &who,
        )
        .await;
        refused(
            &mut my,
            &format!("SET PASSWORD FOR '{user_b}'@'localhost' = PASSWORD('x')"),
            &who,
        )
        .await;
        let _ = my.close().await;
    }

    // B's data is as it was (nothing above got through as a side effect).
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM `{db_b}`.config WHERE name = 'system.site' AND data <> ''"
    )))
    .fetch_one(&mut root)
    .await
    .unwrap();
    assert_eq!(n, 1);
    let intruders: i64 =
        sqlx::query_scalar("SELECT count(*) FROM mysql.user WHERE user = 'berth_intruder'")
            .fetch_one(&mut root)
            .await
            .unwrap();
    assert_eq!(intruders, 0);
    w.stop().await;
}

/// A db admin account of this test's own, dropped when the test ends (also on a failure).
struct Admin(String);

impl Drop for Admin {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(my_exec(&format!("DROP USER IF EXISTS '{name}'@'%'")));
        })
        .join();
    }
}

/// A site verify whose db admin may no longer grant fails at its grant step saying why; the
/// site goes on serving, and its user keeps its database; with the rights back, it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verify_whose_grant_is_refused_fails_and_leaves_the_site_as_it_was() {
    let w = World::start_with(WorldOptions {
        web: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = Admin(format!("b11adm_{}", w.id));
    let a = &admin.0;
    let password = uuid::Uuid::new_v4().simple().to_string();
    my_exec(&format!("CREATE USER '{a}'@'%' IDENTIFIED BY '{password}'")).await;
    my_exec(&format!(
        "GRANT ALL PRIVILEGES ON *.* TO '{a}'@'%' WITH GRANT OPTION"
    ))
    .await;
    let m = mysql_admin();
    let r = w
        .post(
            "/api/v1/servers",
            &json!({"name": "server_master", "host": "localhost",
                "services": {
                    "http": {"type": "nginx", "port": w.web.as_ref().unwrap().port},
                    "db": {"type": "mariadb", "host": m.host, "port": m.port,
                           "admin_user": a, "admin_password": password},
                    "dns": {"type": "null"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let s: Value = r.json().await.unwrap();
    let v = w
        .wait_finished(s["verify_task"].as_str().unwrap().parse().unwrap(), WAIT)
        .await
        .unwrap();
    assert_eq!(v.status, TaskStatus::Success, "{v:#?}");
    w.add_platform("platform_d10", "drupal10").await.unwrap();
    let uri = format!("g.{}.test", w.id);
    let site = w.installed_on_platform(&uri).await;
    let (db, user) = (
        site["db_name"].as_str().unwrap(),
        site["db_user"].as_str().unwrap(),
    );

    // The admin keeps CREATE, DROP and SELECT: no GRANT OPTION, no CREATE USER.
    my_exec(&format!(
        "REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{a}'@'%'"
    ))
    .await;
    my_exec(&format!("GRANT CREATE, DROP, SELECT ON *.* TO '{a}'@'%'")).await;
    let t = w.run("verify", &uri, json!({})).await;
    assert_eq!(t.status, TaskStatus::Error, "{t:#?}");
    let steps = t.steps.as_ref().unwrap();
    let failed: Vec<_> = steps
        .iter()
        .filter(|s| s.status == berth_contracts::StepStatus::Error)
        .map(|s| s.action.as_str())
        .collect();
    assert_eq!(failed, ["site-db-grant"], "{t:#?}");
    let said = t
        .log
        .as_ref()
        .unwrap()
        .iter()
        .any(|l| l.message.contains("grant") && l.message.contains("denied"));
    assert!(said, "the log says the grant was denied: {t:#?}");
    // The site as it was: served from its database, which its user still reaches.
    let (status, body) = w.page(&uri);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("<h1>{uri}</h1>")), "{body}");
    let mut my = MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(m.port)
        .username(user)
        .password(&w.vhost_password(&uri))
        .disable_statement_logging()
        .connect()
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM `{db}`.config"
    )))
    .fetch_one(&mut my)
    .await
    .unwrap();
    assert!(n > 0);
    let _ = my.close().await;
    assert_eq!(
        w.get_json(&format!("/api/v1/sites/{uri}")).await["status"],
        "enabled"
    );

    // The rights back: the verify passes.
    my_exec(&format!(
        "GRANT ALL PRIVILEGES ON *.* TO '{a}'@'%' WITH GRANT OPTION"
    ))
    .await;
    w.run_success("verify", &uri, json!({})).await;
    w.stop().await;
    drop(admin);
}
