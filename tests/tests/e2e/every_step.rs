//! A failure at every step: for each task plan, a failure injected at each of its steps in
//! turn, through the real path (a refused grant, a failing installer, a vhost nginx
//! refuses, a zone BIND's checker refuses, rndc that cannot reach named, a failing dump, a
//! directory berth did not make, a killed worker), and what a user would check afterwards.
//! `docs/failure-table.md` is the readable form of this table; `tests/tests/failures.rs`
//! covers restore, migrate and clone at `backup-extract`, `site-updatedb`, `site-vhost` and
//! a worker killed in `site-updatedb`.
//! Both use the `Case` of `tests/src/case.rs` (the workers as `berth serve` processes that a
//! case restarts broken or kills; cleaned up on drop, also when a case panics).
//!
//! | plan           | step                | injection                                    | test                                   |
//! |----------------|---------------------|----------------------------------------------|----------------------------------------|
//! | install        | site-db-create      | db admin limited to CREATE, DROP, SELECT     | install_site_db_create_refused_grant   |
//! | install        | site-files          | a foreign sites/<uri> (no berth marker)      | install_site_files_foreign_dir         |
//! | install        | site-install        | profile `broken`                             | install_site_install_broken_profile    |
//! | install        | site-install        | http worker SIGKILLed during drush (retried) | install_site_install_killed_worker     |
//! | install        | site-vhost          | php-fpm address unresolvable (nginx -t)      | install_site_vhost_nginx_refuses       |
//! | install        | site-records        | named-checkzone fails                        | install_site_records_checkzone_refuses |
//! | install        | site-records        | rndc cannot reach named (bad rndc.conf)      | install_site_records_rndc_fails        |
//! | install        | site-packages       | drush pm:list fails                          | install_site_packages_drush_fails      |
//! | verify         | site-files          | the site dir lost berth's marker             | verify_site_files_not_berths           |
//! | verify         | site-vhost          | php-fpm address unresolvable (nginx -t)      | verify_site_vhost_nginx_refuses        |
//! | verify         | site-records        | rndc cannot reach named                      | verify_site_records_rndc_fails         |
//! | verify         | site-packages       | drush pm:list fails                          | verify_site_packages_drush_fails       |
//! | disable        | site-vhost          | a broken vhost beside it (nginx -t)          | disable_site_vhost_nginx_refuses       |
//! | enable         | site-vhost          | php-fpm address unresolvable (nginx -t)      | enable_site_vhost_nginx_refuses        |
//! | login-reset    | site-login          | drush user:login fails (admin blocked)       | login_reset_site_login_drush_fails     |
//! | backup         | site-backup         | the dump program fails                       | backup_site_backup_dump_fails          |
//! | backup         | site-backup         | the backups dir is a file                    | backup_site_backup_dir_is_a_file       |
//! | backup         | site-backup         | backup worker SIGKILLed during the dump      | backup_site_backup_killed_worker       |
//! | backup-delete  | backup-delete       | a worker with another backups dir (refused)  | backup_delete_refused                  |
//! | delete         | site-backup         | the dump program fails                       | delete_site_backup_dump_fails          |
//! | delete         | site-vhost-remove   | a broken vhost beside it (nginx -t)          | delete_site_vhost_remove_nginx_refuses |
//! | delete         | site-records-remove | named-checkzone fails                        | delete_site_records_remove_checkzone   |
//! | delete         | site-files-remove   | the site dir lost berth's marker             | delete_site_files_remove_not_berths    |
//! | delete         | site-db-drop        | db admin limited to CREATE, DROP, SELECT     | delete_site_db_drop_refused            |
//! | platform verify| platform-verify     | core/lib/Drupal.php missing                  | platform_verify_broken_codebase        |
//! | server verify  | verify (db)         | db admin limited to CREATE, DROP, SELECT     | server_verify_db_refused               |
//! | server verify  | verify (http)       | a broken vhost beside (nginx -t)             | server_verify_http_nginx_refuses       |
//! | server verify  | verify (dns)        | named-checkconf fails                        | server_verify_dns_checkconf_fails      |
//! | restore        | site-maintenance    | a broken vhost beside it (nginx -t)          | restore_site_maintenance_nginx_refuses |
//! | restore        | site-backup         | the dump program fails                       | restore_site_backup_dump_fails         |
//! | restore        | site-db-create      | db admin limited to CREATE, DROP, SELECT     | restore_site_db_create_refused_grant   |
//! | restore        | site-swap           | a foreign <uri>.berth-old in the way         | restore_site_swap_blocked              |
//! | restore        | site-packages       | drush pm:list fails                          | restore_site_packages_drush_fails      |
//! | migrate+rename | site-records        | named-checkzone fails (old zone removed, put back) | migrate_rename_records_checkzone |
//! | migrate        | site-packages       | drush pm:list fails (target platform)        | migrate_site_packages_drush_fails      |
//! | clone          | site-backup         | the dump program fails                       | clone_site_backup_dump_fails           |
//! | clone          | site-db-create      | db admin limited to CREATE, DROP, SELECT     | clone_site_db_create_refused_grant     |
//! | clone          | site-records        | named-checkzone fails                        | clone_site_records_checkzone_refuses   |

use berth_contracts::{StepStatus, TaskStatus};
use berth_tests::case::{Case, Setup};
use berth_tests::{
    TASK_WAIT as WAIT, children_of, failed_at, log_of, mysql_db_exists, mysql_dbs_like,
    mysql_user_exists, task_id,
};
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

// ---------------------------------------------------------------------------------------
// Install: every step. Nothing is left behind, the site is `failed`, and a retry (once the
// cause is gone) installs it.

#[derive(Clone, Copy, PartialEq, Debug)]
enum InstallAt {
    DbCreate,
    Files,
    Vhost,
    RecordsCheckzone,
    RecordsRndc,
    Packages,
}

async fn install_fails_at(at: InstallAt) {
    let dns = matches!(at, InstallAt::RecordsCheckzone | InstallAt::RecordsRndc);
    let mut c = Case::start(Setup {
        dns,
        own_admin: at == InstallAt::DbCreate,
        ..Default::default()
    })
    .await;
    let foreign = c.root.join("sites").join(&c.uri);
    let (action, says) = match at {
        InstallAt::DbCreate => {
            c.limit_admin().await;
            ("site-db-create", "create user")
        }
        InstallAt::Files => {
            std::fs::create_dir_all(&foreign).unwrap();
            std::fs::write(foreign.join("mine.txt"), "not berth's").unwrap();
            ("site-files", "was not made by berth")
        }
        InstallAt::Vhost => {
            c.break_vhosts();
            ("site-vhost", "fastcgi_params.invalid")
        }
        InstallAt::RecordsCheckzone => {
            c.respawn("dns", &[("BERTH_NAMED_CHECKZONE_BIN", "false")]);
            ("site-records", "named-checkzone refused")
        }
        InstallAt::RecordsRndc => {
            let bad = c.w.dir.join("no-rndc.conf");
            c.respawn("dns", &[("BERTH_RNDC_CONF", bad.to_str().unwrap())]);
            ("site-records", "rndc")
        }
        InstallAt::Packages => {
            Case::drush_inject(&c.root, "cmd_pm_list(", "fail('injected: pm:list fails');");
            ("site-packages", "injected: pm:list fails")
        }
    };
    let (_, t) =
        c.w.install_site(json!({"uri": c.uri, "platform": "platform_a"}))
            .await
            .unwrap();
    failed_at(&t, action, says);
    if at == InstallAt::Files {
        // What berth did not make stays, untouched; the rest is gone.
        assert_eq!(
            std::fs::read_to_string(foreign.join("mine.txt")).unwrap(),
            "not berth's"
        );
        let site = c.site(&c.uri).await;
        assert_eq!(site["status"], "failed");
        assert!(!mysql_db_exists(site["db_name"].as_str().unwrap()).await);
        assert!(!c.vhost(&c.uri).exists());
        std::fs::remove_dir_all(&foreign).unwrap();
    } else {
        c.nothing_left_of(&c.uri).await;
    }
    // The cause goes; a retry installs the site.
    match at {
        InstallAt::DbCreate => c.grant_all().await,
        InstallAt::Vhost => c.respawn("http", &[]),
        InstallAt::RecordsCheckzone | InstallAt::RecordsRndc => c.respawn("dns", &[]),
        InstallAt::Packages => Case::drush_restore(&c.root),
        InstallAt::Files => {}
    }
    c.w.run_success("install", &c.uri, json!({})).await;
    c.serves_its_page(&c.uri);
    assert_eq!(c.site(&c.uri).await["status"], "enabled");
    if dns {
        assert!(c.has_records(&c.uri));
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_site_db_create_refused_grant() {
    install_fails_at(InstallAt::DbCreate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_site_files_foreign_dir() {
    install_fails_at(InstallAt::Files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_site_vhost_nginx_refuses() {
    install_fails_at(InstallAt::Vhost).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_site_records_checkzone_refuses() {
    install_fails_at(InstallAt::RecordsCheckzone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_site_records_rndc_fails() {
    install_fails_at(InstallAt::RecordsRndc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_site_packages_drush_fails() {
    install_fails_at(InstallAt::Packages).await;
}

/// The profile `broken` fails `site:install` after creating tables: nothing is left, and
/// the next install on the platform (a good profile) works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_site_install_broken_profile() {
    let c = Case::start(Setup::default()).await;
    let (_, t) =
        c.w.install_site(json!({"uri": c.uri, "platform": "platform_a", "profile": "broken"}))
            .await
            .unwrap();
    failed_at(&t, "site-install", "profile 'broken' threw");
    c.nothing_left_of(&c.uri).await;
    let other = format!("t{}.example.test", c.w.id);
    let (_, t) =
        c.w.install_site(json!({"uri": other, "platform": "platform_a"}))
            .await
            .unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    c.serves_its_page(&other);
    c.stop().await;
}

/// The http worker dies while drush installs: the step is redelivered to its replacement,
/// the install completes, and there is one database and one vhost for the site.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn install_site_install_killed_worker() {
    let mut c = Case::start(Setup::default()).await;
    Case::drush_inject(&c.root, "cmd_site_install(", "sleep(3);");
    let (_, v) =
        c.w.post_json(
            "/api/v1/sites",
            &json!({"uri": c.uri, "platform": "platform_a"}),
        )
        .await;
    let id = task_id(&v["task"]);
    c.w.wait_task(id, WAIT, "drush site:install running", |t| {
        log_of(t).contains("drush site:install")
    })
    .await
    .unwrap();
    // The worker alone (as `kill -9 <pid>` would): its drush must not outlive it, or it
    // races the redelivered step on the same database.
    let worker = c.pid("http").unwrap();
    let drush = children_of(worker);
    assert!(
        !drush.is_empty(),
        "drush should be running under the worker"
    );
    c.respawn("http", &[]);
    for pid in &drush {
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            kill(Pid::from_raw(*pid), None).is_err()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        });
        assert!(gone, "drush {pid} outlived its killed worker");
    }
    let t = c.w.wait_finished(id, WAIT).await.unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    c.serves_its_page(&c.uri);
    let db = c.db().await;
    let base = db.rsplit_once('_').unwrap().0;
    assert_eq!(mysql_dbs_like(&format!("{base}_")).await, 1);
    let confs: Vec<_> = std::fs::read_dir(c.vhost_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(&c.uri))
        .collect();
    assert_eq!(confs.len(), 1);
    c.nothing_half_done();
    c.stop().await;
}

// ---------------------------------------------------------------------------------------
// Verify, disable, enable, login-reset: one-step (or undo-free) tasks on an installed site.
// The site serves as before and a later verify succeeds.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_site_files_not_berths() {
    let c = Case::start(Setup::INSTALLED).await;
    let marker = c.root.join("sites").join(&c.uri).join(".berth-site");
    std::fs::remove_file(&marker).unwrap();
    let t = c.run("verify", &c.uri, json!({})).await;
    failed_at(&t, "site-files", "was not made by berth");
    c.serves_its_page(&c.uri);
    std::fs::write(&marker, format!("{}\n", c.uri)).unwrap();
    c.as_before("enabled").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_site_vhost_nginx_refuses() {
    let mut c = Case::start(Setup::INSTALLED).await;
    let before = std::fs::read_to_string(c.vhost(&c.uri)).unwrap();
    c.break_vhosts();
    let t = c.run("verify", &c.uri, json!({})).await;
    failed_at(&t, "site-vhost", "fastcgi_params.invalid");
    assert_eq!(std::fs::read_to_string(c.vhost(&c.uri)).unwrap(), before);
    c.serves_its_page(&c.uri);
    c.respawn("http", &[]);
    c.as_before("enabled").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_site_records_rndc_fails() {
    let mut c = Case::start(Setup {
        dns: true,
        ..Setup::INSTALLED
    })
    .await;
    let bad = c.w.dir.join("no-rndc.conf");
    c.respawn("dns", &[("BERTH_RNDC_CONF", bad.to_str().unwrap())]);
    let t = c.run("verify", &c.uri, json!({})).await;
    failed_at(&t, "site-records", "rndc");
    assert!(c.has_records(&c.uri));
    c.serves_its_page(&c.uri);
    c.respawn("dns", &[]);
    c.as_before("enabled").await;
    assert!(c.has_records(&c.uri));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_site_packages_drush_fails() {
    let c = Case::start(Setup::INSTALLED).await;
    Case::drush_inject(&c.root, "cmd_pm_list(", "fail('injected: pm:list fails');");
    let t = c.run("verify", &c.uri, json!({})).await;
    failed_at(&t, "site-packages", "injected: pm:list fails");
    c.serves_its_page(&c.uri);
    Case::drush_restore(&c.root);
    c.as_before("enabled").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disable_site_vhost_nginx_refuses() {
    let c = Case::start(Setup::INSTALLED).await;
    let broken = c.break_nginx();
    let t = c.run("disable", &c.uri, json!({})).await;
    failed_at(&t, "site-vhost", "nginx rejects");
    std::fs::remove_file(broken).unwrap();
    c.as_before("enabled").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn enable_site_vhost_nginx_refuses() {
    let mut c = Case::start(Setup::INSTALLED).await;
    c.w.run_success("disable", &c.uri, json!({})).await;
    c.break_vhosts();
    let t = c.run("enable", &c.uri, json!({})).await;
    failed_at(&t, "site-vhost", "fastcgi_params.invalid");
    // Still disabled, and still saying so.
    let (status, body) = c.page(&c.uri);
    assert!(body.contains("Site disabled"), "{status} {body}");
    assert_eq!(c.site(&c.uri).await["status"], "disabled");
    c.nothing_half_done();
    c.respawn("http", &[]);
    c.w.run_success("verify", &c.uri, json!({})).await;
    c.w.run_success("enable", &c.uri, json!({})).await;
    c.serves_its_page(&c.uri);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_reset_site_login_drush_fails() {
    let c = Case::start(Setup::INSTALLED).await;
    let link = c.site(&c.uri).await["login_link"].clone();
    Case::drush_inject(
        &c.root,
        "cmd_user_login(",
        "fail('injected: user:login fails');",
    );
    let t = c.run("login-reset", &c.uri, json!({})).await;
    failed_at(&t, "site-login", "injected: user:login fails");
    assert_eq!(c.site(&c.uri).await["login_link"], link);
    Case::drush_restore(&c.root);
    c.as_before("enabled").await;
    c.w.run_success("login-reset", &c.uri, json!({})).await;
    c.stop().await;
}

// ---------------------------------------------------------------------------------------
// Backup and backup-delete: no half-made file, no backup listed that is not there.

#[derive(Clone, Copy, PartialEq, Debug)]
enum BackupAt {
    Dump,
    DirIsAFile,
}

async fn backup_fails(at: BackupAt) {
    let mut c = Case::start(Setup::INSTALLED).await;
    let dir = c.w.dir.join("backups");
    let _ = std::fs::remove_dir_all(&dir);
    let says = match at {
        BackupAt::Dump => {
            c.respawn("backup", &[("BERTH_DUMP_BIN", "false")]);
            "false"
        }
        BackupAt::DirIsAFile => {
            std::fs::write(&dir, "a file where the backups go").unwrap();
            "backups"
        }
    };
    let t = c.run("backup", &c.uri, json!({})).await;
    failed_at(&t, "site-backup", says);
    assert!(c.backups().await.is_empty());
    if at == BackupAt::Dump {
        assert!(c.backup_files().is_empty(), "{:?}", c.backup_files());
        c.respawn("backup", &[]);
    } else {
        std::fs::remove_file(&dir).unwrap();
    }
    c.as_before("enabled").await;
    c.w.run_success("backup", &c.uri, json!({})).await;
    assert_eq!(c.backups().await.len(), 1);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_site_backup_dump_fails() {
    backup_fails(BackupAt::Dump).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_site_backup_dir_is_a_file() {
    backup_fails(BackupAt::DirIsAFile).await;
}

/// A slow dump (a dump program that waits 3 s first); the backup worker is killed during
/// it and replaced: the backup completes once, with one file and no leftovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_site_backup_killed_worker() {
    let mut c = Case::start(Setup::INSTALLED).await;
    let slow = c.w.dir.join("slow-dump.sh");
    std::fs::write(&slow, "#!/bin/sh\nsleep 3\nexec mariadb-dump \"$@\"\n").unwrap();
    std::fs::set_permissions(
        &slow,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    c.respawn("backup", &[("BERTH_DUMP_BIN", slow.to_str().unwrap())]);
    let t = c.w.create_task("backup", &c.uri, json!({})).await.unwrap();
    c.w.wait_task(t.id, WAIT, "dumping", |t| log_of(t).contains("dumping"))
        .await
        .unwrap();
    c.kill_worker("backup");
    assert_eq!(c.w.task(t.id).await.unwrap().status, TaskStatus::Processing);
    c.respawn("backup", &[]);
    let t = c.w.wait_finished(t.id, WAIT).await.unwrap();
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    let backups = c.backups().await;
    assert_eq!(backups.len(), 1);
    assert_eq!(c.backup_files(), [backups[0]["file"].as_str().unwrap()]);
    c.as_before("enabled").await;
    c.stop().await;
}

/// The backup worker is configured with another backups directory: it refuses to delete a
/// file outside its own. The backup stays listed, and its file stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backup_delete_refused() {
    let mut c = Case::start(Setup::INSTALLED).await;
    c.w.run_success("backup", &c.uri, json!({})).await;
    let b = c.backups().await[0].clone();
    let other = c.w.dir.join("other-backups");
    std::fs::create_dir_all(&other).unwrap();
    c.respawn("backup", &[("BERTH_BACKUPS_DIR", other.to_str().unwrap())]);
    let t = c
        .run("backup-delete", &c.uri, json!({"backup": b["id"]}))
        .await;
    failed_at(&t, "backup-delete", "refused");
    assert_eq!(c.backups().await.len(), 1);
    assert!(Path::new(b["path"].as_str().unwrap()).exists());
    c.respawn("backup", &[]);
    let t = c
        .run("backup-delete", &c.uri, json!({"backup": b["id"]}))
        .await;
    assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    assert!(c.backups().await.is_empty());
    assert!(!Path::new(b["path"].as_str().unwrap()).exists());
    c.as_before("enabled").await;
    c.stop().await;
}

// ---------------------------------------------------------------------------------------
// Delete: backup first (a failure there removes nothing), then removals. A removal that
// fails leaves what comes after it in place (the steps before are done: the delete is past
// its point of no return), and the same delete, run again, completes.

#[derive(Clone, Copy, PartialEq, PartialOrd, Debug)]
enum DeleteAt {
    Backup,
    VhostRemove,
    RecordsRemove,
    FilesRemove,
    DbDrop,
}

async fn delete_fails_at(at: DeleteAt) {
    let mut c = Case::start(Setup {
        dns: at == DeleteAt::RecordsRemove,
        own_admin: at == DeleteAt::DbDrop,
        ..Setup::INSTALLED
    })
    .await;
    let db = c.db().await;
    let site_dir = c.root.join("sites").join(&c.uri);
    let marker = site_dir.join(".berth-site");
    let mut broken = None;
    let (action, says) = match at {
        DeleteAt::Backup => {
            c.respawn("backup", &[("BERTH_DUMP_BIN", "false")]);
            ("site-backup", "false")
        }
        DeleteAt::VhostRemove => {
            broken = Some(c.break_nginx());
            ("site-vhost-remove", "nginx rejects")
        }
        DeleteAt::RecordsRemove => {
            c.zone_made_by_operator();
            c.respawn("dns", &[("BERTH_NAMED_CHECKZONE_BIN", "false")]);
            ("site-records-remove", "named-checkzone refused")
        }
        DeleteAt::FilesRemove => {
            std::fs::remove_file(&marker).unwrap();
            ("site-files-remove", "was not made by berth")
        }
        DeleteAt::DbDrop => {
            c.limit_admin().await;
            ("site-db-drop", "drop user")
        }
    };
    let t = c.run("delete", &c.uri, json!({})).await;
    failed_at(&t, action, says);
    // Not deleted; the backup taken first is kept (none when it was the backup that failed).
    assert_eq!(c.site(&c.uri).await["status"], "enabled");
    let backups = c.backups().await.len();
    assert_eq!(backups, usize::from(at != DeleteAt::Backup));
    // What comes after the failed step is still there.
    let after = |step: DeleteAt| (step as u8) >= (at as u8);
    assert_eq!(c.vhost(&c.uri).exists(), after(DeleteAt::VhostRemove));
    if at == DeleteAt::RecordsRemove {
        assert!(c.has_records(&c.uri), "{}", c.zones());
    }
    assert_eq!(site_dir.exists(), after(DeleteAt::FilesRemove));
    assert!(mysql_db_exists(&db).await);
    if at <= DeleteAt::VhostRemove {
        // Nothing removed yet: the site serves as before.
        if let Some(b) = broken.take() {
            std::fs::remove_file(b).unwrap();
        }
        c.as_before("enabled").await;
    }
    // The cause goes; the delete, run again, completes.
    match at {
        DeleteAt::Backup => c.respawn("backup", &[]),
        DeleteAt::RecordsRemove => c.respawn("dns", &[]),
        DeleteAt::FilesRemove => std::fs::write(&marker, format!("{}\n", c.uri)).unwrap(),
        DeleteAt::DbDrop => c.grant_all().await,
        DeleteAt::VhostRemove => {}
    }
    let t = c.run("delete", &c.uri, json!({})).await;
    if at == DeleteAt::DbDrop {
        // The files went in the first run, after its backup: the re-run's backup step has
        // nothing to pack and says so; the first run's backup stays the site's last.
        assert_eq!(t.status, TaskStatus::Warning, "{}", log_of(&t));
        assert!(log_of(&t).contains("no backup taken"), "{}", log_of(&t));
        assert_eq!(c.backups().await.len(), 1);
    } else {
        assert_eq!(t.status, TaskStatus::Success, "{}", log_of(&t));
    }
    assert_eq!(c.site(&c.uri).await["status"], "deleted");
    assert!(!mysql_db_exists(&db).await);
    assert!(!mysql_user_exists(&db).await);
    assert!(!site_dir.exists());
    assert!(!c.vhost(&c.uri).exists());
    assert!(!c.has_records(&c.uri));
    assert_eq!(c.page(&c.uri).0, 404);
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_site_backup_dump_fails() {
    delete_fails_at(DeleteAt::Backup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_site_vhost_remove_nginx_refuses() {
    delete_fails_at(DeleteAt::VhostRemove).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_site_records_remove_checkzone() {
    delete_fails_at(DeleteAt::RecordsRemove).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_site_files_remove_not_berths() {
    delete_fails_at(DeleteAt::FilesRemove).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_site_db_drop_refused() {
    delete_fails_at(DeleteAt::DbDrop).await;
}

// ---------------------------------------------------------------------------------------
// Platform and server verify: one step per service, nothing to take back; the sites go on.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn platform_verify_broken_codebase() {
    let c = Case::start(Setup::INSTALLED).await;
    let core = c.root.join("core/lib/Drupal.php");
    let aside = c.w.dir.join("Drupal.php");
    std::fs::rename(&core, &aside).unwrap();
    let t = c.run("verify", "platform_a", json!({})).await;
    failed_at(&t, "platform-verify", "Drupal.php");
    let p = c.w.get_json("/api/v1/platforms/platform_a").await;
    assert_eq!(p["status"], "failed", "{p}");
    std::fs::rename(&aside, &core).unwrap();
    c.serves_its_page(&c.uri);
    c.w.run_success("verify", "platform_a", json!({})).await;
    c.as_before("enabled").await;
    c.stop().await;
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum ServerAt {
    Db,
    Http,
    Dns,
}

async fn server_verify_fails_at(at: ServerAt) {
    let mut c = Case::start(Setup {
        dns: at == ServerAt::Dns,
        own_admin: at == ServerAt::Db,
        ..Setup::INSTALLED
    })
    .await;
    let mut broken = None;
    let (says, service) = match at {
        ServerAt::Db => {
            c.limit_admin().await;
            ("create user", "db")
        }
        ServerAt::Http => {
            broken = Some(c.break_nginx());
            ("zz-broken.conf", "http")
        }
        ServerAt::Dns => {
            c.respawn("dns", &[("BERTH_NAMED_CHECKCONF_BIN", "false")]);
            ("false", "dns")
        }
    };
    let t = c.run("verify", "server_master", json!({})).await;
    failed_at(&t, "verify", says);
    let failed = t
        .steps
        .as_ref()
        .unwrap()
        .iter()
        .find(|s| s.status == StepStatus::Error)
        .unwrap();
    assert_eq!(failed.service, service);
    if at == ServerAt::Db {
        // The probe database the verify made is gone again.
        let log = log_of(&t);
        let probe = log
            .split_whitespace()
            .find(|w| w.starts_with("berth_verify_"))
            .expect("the probe database is named in the log");
        assert!(!mysql_db_exists(probe).await, "{probe} left behind");
        c.grant_all().await;
    }
    if let Some(b) = broken {
        std::fs::remove_file(b).unwrap();
    }
    if at == ServerAt::Dns {
        c.respawn("dns", &[]);
    }
    c.serves_its_page(&c.uri);
    c.w.run_success("verify", "server_master", json!({})).await;
    c.as_before("enabled").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_verify_db_refused() {
    server_verify_fails_at(ServerAt::Db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_verify_http_nginx_refuses() {
    server_verify_fails_at(ServerAt::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_verify_dns_checkconf_fails() {
    server_verify_fails_at(ServerAt::Dns).await;
}

// ---------------------------------------------------------------------------------------
// Restore, migrate, clone: the steps failures.rs does not reach. The site serves as
// before, out of maintenance, with its database, nothing beside it; a clone's new site is
// failed with nothing left of it.

#[derive(Clone, Copy, PartialEq, PartialOrd, Debug)]
enum DataAt {
    Maintenance,
    Backup,
    DbCreate,
    Swap,
    Packages,
}

async fn restore_fails_at(at: DataAt) {
    let mut c = Case::start(Setup {
        own_admin: at == DataAt::DbCreate,
        ..Setup::INSTALLED
    })
    .await;
    c.w.run_success("backup", &c.uri, json!({})).await;
    let backup = c.backups().await[0]["id"].clone();
    let db = c.db().await;
    let blocker = c.root.join("sites").join(format!("{}.berth-old", c.uri));
    let mut broken = None;
    let (action, says) = match at {
        DataAt::Maintenance => {
            broken = Some(c.break_nginx());
            ("site-maintenance", "nginx rejects")
        }
        DataAt::Backup => {
            c.respawn("backup", &[("BERTH_DUMP_BIN", "false")]);
            ("site-backup", "false")
        }
        DataAt::DbCreate => {
            c.limit_admin().await;
            ("site-db-create", "create user")
        }
        DataAt::Swap => {
            std::fs::create_dir_all(&blocker).unwrap();
            std::fs::write(blocker.join("mine.txt"), "not berth's").unwrap();
            ("site-swap", "berth-old")
        }
        DataAt::Packages => {
            Case::drush_inject(&c.root, "cmd_pm_list(", "fail('injected: pm:list fails');");
            ("site-packages", "injected: pm:list fails")
        }
    };
    let t = c.run("restore", &c.uri, json!({"backup": backup})).await;
    failed_at(&t, action, says);
    let next = t.args["next_db"]["name"].as_str().unwrap();
    assert!(!mysql_db_exists(next).await, "{next} left behind");
    assert!(!mysql_user_exists(next).await, "user {next} left behind");
    assert_eq!(c.site(&c.uri).await["db_name"], db.as_str());
    // The backup the restore takes first is kept when it was made.
    let n = c.backups().await.len();
    assert_eq!(
        n,
        if at <= DataAt::Maintenance || at == DataAt::Backup {
            1
        } else {
            2
        }
    );
    match at {
        DataAt::Maintenance => std::fs::remove_file(broken.take().unwrap()).unwrap(),
        DataAt::Backup => c.respawn("backup", &[]),
        DataAt::DbCreate => c.grant_all().await,
        DataAt::Swap => {
            assert_eq!(
                std::fs::read_to_string(blocker.join("mine.txt")).unwrap(),
                "not berth's"
            );
            std::fs::remove_dir_all(&blocker).unwrap();
        }
        DataAt::Packages => Case::drush_restore(&c.root),
    }
    c.as_before("enabled").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_site_maintenance_nginx_refuses() {
    restore_fails_at(DataAt::Maintenance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_site_backup_dump_fails() {
    restore_fails_at(DataAt::Backup).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_site_db_create_refused_grant() {
    restore_fails_at(DataAt::DbCreate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_site_swap_blocked() {
    restore_fails_at(DataAt::Swap).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restore_site_packages_drush_fails() {
    restore_fails_at(DataAt::Packages).await;
}

/// A migrate that renames the site on a bind server: its old name's records go first, and
/// named-checkzone refuses that change. The site keeps its name, records, platform and
/// database, and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_rename_records_checkzone() {
    let mut c = Case::start(Setup {
        dns: true,
        ..Setup::INSTALLED
    })
    .await;
    let db = c.db().await;
    let new = format!("n{}.example.test", c.w.id);
    c.respawn("dns", &[("BERTH_NAMED_CHECKZONE_BIN", "false")]);
    let t = c.run("migrate", &c.uri, json!({"uri": new})).await;
    // The old name was the zone's only one: its removal removes the zone (no check needed),
    // the new name's zone is refused, and taking the removal back puts the zone file named
    // had loaded back, unchecked, so the broken checker cannot cost the site its records.
    failed_at(&t, "site-records", "named-checkzone refused");
    assert!(
        log_of(&t).contains("put back as named last loaded it"),
        "{}",
        log_of(&t)
    );
    let site = c.site(&c.uri).await;
    assert_eq!(site["db_name"], db.as_str());
    assert!(c.has_records(&c.uri));
    assert!(!c.has_records(&new));
    assert!(!c.root.join("sites").join(&new).exists());
    assert!(!c.vhost(&new).exists());
    assert!(!mysql_db_exists(t.args["next_db"]["name"].as_str().unwrap()).await);
    c.respawn("dns", &[]);
    c.as_before("enabled").await;
    c.stop().await;
}

/// A migrate to platform_b whose drush fails `pm:list`: the site stays on platform_a.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrate_site_packages_drush_fails() {
    let c = Case::start(Setup {
        second_platform: true,
        ..Setup::INSTALLED
    })
    .await;
    let db = c.db().await;
    let b = c.root_b.clone().unwrap();
    Case::drush_inject(&b, "cmd_pm_list(", "fail('injected: pm:list fails');");
    let t = c
        .run("migrate", &c.uri, json!({"platform": "platform_b"}))
        .await;
    failed_at(&t, "site-packages", "injected: pm:list fails");
    let site = c.site(&c.uri).await;
    assert_eq!(site["platform"], "platform_a");
    assert_eq!(site["db_name"], db.as_str());
    assert!(!b.join("sites").join(&c.uri).exists());
    assert!(!mysql_db_exists(t.args["next_db"]["name"].as_str().unwrap()).await);
    c.as_before("enabled").await;
    c.stop().await;
}

async fn clone_fails_at(at: DataAt, dns: bool) {
    let mut c = Case::start(Setup {
        dns,
        own_admin: at == DataAt::DbCreate,
        ..Setup::INSTALLED
    })
    .await;
    let copy = format!("c{}.example.test", c.w.id);
    let (action, says) = match (at, dns) {
        (DataAt::Backup, _) => {
            c.respawn("backup", &[("BERTH_DUMP_BIN", "false")]);
            ("site-backup", "false")
        }
        (DataAt::DbCreate, _) => {
            c.limit_admin().await;
            ("site-db-create", "create user")
        }
        (_, true) => {
            c.respawn("dns", &[("BERTH_NAMED_CHECKZONE_BIN", "false")]);
            ("site-records", "named-checkzone refused")
        }
        _ => unreachable!(),
    };
    let t = c.run("clone", &c.uri, json!({"uri": copy})).await;
    failed_at(&t, action, says);
    c.nothing_left_of(&copy).await;
    match at {
        DataAt::Backup => c.respawn("backup", &[]),
        DataAt::DbCreate => c.grant_all().await,
        _ => c.respawn("dns", &[]),
    }
    c.as_before("enabled").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clone_site_backup_dump_fails() {
    clone_fails_at(DataAt::Backup, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clone_site_db_create_refused_grant() {
    clone_fails_at(DataAt::DbCreate, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clone_site_records_checkzone_refuses() {
    clone_fails_at(DataAt::Swap, true).await;
}
