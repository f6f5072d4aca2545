//! Sites: their statuses and which tasks each allows, and the names berth derives for a
//! site (database, user, hosts its user may connect from, backup files).

use berth_contracts::TaskType;

/// Site statuses, as stored.
pub mod status {
    pub const INSTALLING: &str = "installing";
    pub const ENABLED: &str = "enabled";
    pub const DISABLED: &str = "disabled";
    pub const FAILED: &str = "failed";
    pub const DELETED: &str = "deleted";
}

/// Drupal's one-time login links: `…/user/reset/<uid>/<timestamp>/<hash>/login`. A link is
/// spent once its user has logged in at or after its timestamp (Drupal's own rule: the
/// hash covers the last login time).
pub mod login {
    /// The link's timestamp.
    pub fn timestamp(link: &str) -> Option<i64> {
        let rest = link.split("/user/reset/").nth(1)?;
        let mut parts = rest.split('/');
        let _uid = parts.next()?;
        parts.next()?.parse().ok()
    }

    /// The query giving the admin's last login time on a site of this Drupal version.
    pub fn last_login_sql(drupal_major: Option<i32>) -> &'static str {
        if drupal_major.is_some_and(|m| m <= 7) {
            "SELECT CAST(COALESCE(login, 0) AS SIGNED) FROM users WHERE uid = 1"
        } else {
            "SELECT CAST(COALESCE(login, 0) AS SIGNED) FROM users_field_data WHERE uid = 1"
        }
    }

    /// Whether a link with this timestamp is spent, given the admin's last login.
    pub fn spent(link_ts: i64, last_login: i64) -> bool {
        last_login >= link_ts
    }
}

/// Drupal's cron: where its HTTP entry point is and whether an answer is a success.
pub mod cron {
    /// The path berth's worker requests for a site's cron over HTTP, its key in
    /// [`KEY_HEADER`]: the site's vhost hands PHP the URL Drupal answers for a site of this
    /// major ([`drupal_url`]), so the key never is in a request line, which nginx names in
    /// its access and error logs (it never logs request headers).
    pub fn berth_path(drupal_major: Option<i32>) -> &'static str {
        if is_d7(drupal_major) {
            PATH_D7
        } else {
            PATH_D8
        }
    }

    /// The vhost paths of [`berth_path`]; a dot path, which no site can have.
    pub const PATH_D7: &str = "/.berth-cron/7";
    pub const PATH_D8: &str = "/.berth-cron/8";
    /// The request header that carries the cron key to the vhost.
    pub const KEY_HEADER: &str = "x-berth-cron-key";
    /// The response header berth's cron location adds: a vhost without it was written
    /// before the location was.
    pub const ANSWERED_HEADER: &str = "x-berth-cron";

    /// Drupal's own cron URL (7 and older: `cron.php?cron_key=`; 8+: the `system.cron`
    /// route), as the site's PHP sees it; `<key>` stands for the key, in what berth shows.
    pub fn drupal_url(drupal_major: Option<i32>) -> &'static str {
        if is_d7(drupal_major) {
            "/cron.php?cron_key=<key>"
        } else {
            "/cron/<key>"
        }
    }

    /// Drupal's own cron URL with the key in it: only for a vhost older than berth's cron
    /// location. The key is 32 hex digits (berth makes it), so it needs no escaping.
    pub fn drupal_url_with(drupal_major: Option<i32>, key: &str) -> String {
        drupal_url(drupal_major).replace("<key>", key)
    }

    fn is_d7(drupal_major: Option<i32>) -> bool {
        drupal_major.is_some_and(|m| m <= 7)
    }

    /// Only a 2xx answer says cron ran: a redirect is not followed (the site could send
    /// the worker anywhere) and counts as a failure.
    pub fn succeeded(status: u16) -> bool {
        (200..300).contains(&status)
    }
}

/// The database and user names of a new site: the uri's letters and digits (Aegir's
/// habit), cut to fit MySQL's limits, with a random suffix so that re-installing a uri
/// never meets the leftovers of an earlier one. `suffix` is 6 lower-case hex digits.
pub fn db_names(uri: &str, suffix: &str) -> (String, String) {
    let base: String = uri
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(25)
        .collect();
    let name = format!("{base}_{suffix}");
    // MySQL user names are at most 32 characters; the database gets the same name.
    (name.clone(), name)
}

/// Hosts the site's database user may connect from: the addresses the web server's PHP
/// really connects from. When the db server's host is a loopback address, PHP can only
/// reach it from this machine, over loopback, so the grants are both spellings of the
/// local host whatever the web server calls itself (MariaDB skips name resolution and
/// sees 127.0.0.1, never the host name `ops/run.sh` registers). Likewise when the web
/// server is the local machine. Otherwise, the web server's host.
pub fn grant_hosts(web_host: &str, db_host: &str) -> Vec<String> {
    let local = |h: &str| {
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        h == "localhost"
            || h.ends_with(".localhost")
            || h.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    };
    if local(db_host) || local(web_host) {
        vec!["localhost".into(), "127.0.0.1".into()]
    } else {
        vec![web_host.to_string()]
    }
}

/// The statuses a site must be in for a task type to run on it.
pub fn statuses_for(task_type: TaskType) -> &'static [&'static str] {
    match task_type {
        TaskType::Install => &[status::INSTALLING, status::FAILED],
        TaskType::Verify => &[status::ENABLED, status::DISABLED],
        // A disabled site's cron is not run (Aegir's rule too).
        TaskType::Disable | TaskType::LoginReset | TaskType::Cron => &[status::ENABLED],
        // A drill compares the copy with what the site serves: a disabled site serves
        // its "disabled" page.
        TaskType::Drill => &[status::ENABLED],
        TaskType::Enable => &[status::DISABLED],
        TaskType::Suspend | TaskType::Unsuspend => &[status::ENABLED, status::DISABLED],
        TaskType::Usage => &[status::ENABLED, status::DISABLED],
        TaskType::Backup => &[status::ENABLED, status::DISABLED],
        // The API refuses an enabled site unless deleting enabled sites is allowed.
        TaskType::Delete => &[status::DISABLED, status::ENABLED],
        TaskType::Restore
        | TaskType::Migrate
        | TaskType::Clone
        | TaskType::BackupDelete
        | TaskType::Prune => &[status::ENABLED, status::DISABLED],
        TaskType::Noop => &[],
    }
}

/// `Err` says why a task type cannot run on a site in this status.
pub fn check_status(task_type: TaskType, uri: &str, current: &str) -> Result<(), String> {
    let allowed = statuses_for(task_type);
    if allowed.contains(&current) {
        Ok(())
    } else if allowed.is_empty() {
        Err(format!("{} does not run on sites", task_type.as_str()))
    } else {
        Err(format!(
            "site `{uri}` is {current}: {} needs it {}",
            task_type.as_str(),
            allowed.join(" or ")
        ))
    }
}

/// The directory a restore unpacks the backup into, beside the live site.
pub fn restore_dir(root: &str, uri: &str) -> String {
    format!("{root}/sites/{uri}.berth-new")
}

/// A backup's file name: `<uri>-<UTC time>`, as Aegir names them, and a few random hex
/// digits (`unique`): two backups in one second must not share a file.
pub fn backup_file_name(uri: &str, at: chrono::DateTime<chrono::Utc>, unique: &str) -> String {
    format!("{uri}-{}-{unique}", at.format("%Y%m%dT%H%M%SZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_files_are_named_by_site_and_time() {
        assert_eq!(
            backup_file_name(
                "a.test",
                chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap(),
                "1a2b"
            ),
            "a.test-20261118T110640Z-1a2b"
        );
    }

    #[test]
    fn cron_urls_follow_the_drupal_version_and_only_2xx_succeeds() {
        assert_eq!(cron::berth_path(Some(7)), cron::PATH_D7);
        assert_eq!(cron::drupal_url(Some(7)), "/cron.php?cron_key=<key>");
        assert_eq!(cron::berth_path(Some(10)), cron::PATH_D8);
        assert_eq!(cron::drupal_url(Some(10)), "/cron/<key>");
        assert_eq!(
            cron::drupal_url_with(Some(7), "ab12"),
            "/cron.php?cron_key=ab12"
        );
        assert_eq!(cron::drupal_url_with(Some(10), "ab12"), "/cron/ab12");
        // Not scanned yet: the current route.
        assert_eq!(cron::berth_path(None), cron::PATH_D8);
        assert!(cron::succeeded(200) && cron::succeeded(204));
        for status in [301, 302, 403, 404, 500, 503] {
            assert!(!cron::succeeded(status), "{status}");
        }
        assert_eq!(statuses_for(TaskType::Cron), [status::ENABLED]);
        assert!(check_status(TaskType::Cron, "a.test", status::DISABLED).is_err());
    }

    #[test]
    fn login_links_are_spent_by_a_later_login() {
        let link = "http://a.test/user/reset/1/1763800000/abcDEF_-1/login";
        assert_eq!(login::timestamp(link), Some(1_763_800_000));
        assert_eq!(login::timestamp("http://a.test/"), None);
        assert!(login::spent(1_763_800_000, 1_763_800_005));
        assert!(!login::spent(1_763_800_000, 0));
        assert!(login::last_login_sql(Some(7)).contains("FROM users "));
        assert!(login::last_login_sql(Some(10)).contains("users_field_data"));
    }

    #[test]
    fn database_names_fit_mysql_and_hosts_follow_the_web_server() {
        let (db, user) = db_names(&format!("{}.example.com", "a".repeat(60)), "abc123");
        assert!(user.len() <= 32, "{user}");
        assert_eq!(db, user);
        assert!(db.ends_with("_abc123"));
        assert_eq!(
            grant_hosts("web1.example.com", "db.example.com"),
            ["web1.example.com"]
        );
        assert_eq!(
            grant_hosts("localhost", "127.0.0.1"),
            ["localhost", "127.0.0.1"]
        );
        // The db server on loopback: PHP connects from loopback whatever the web
        // server's name (ops/run.sh registers `hostname -f`, MariaDB sees 127.0.0.1).
        for db_host in ["127.0.0.1", "localhost", "::1", "127.0.1.1", "[::1]"] {
            assert_eq!(
                grant_hosts("vm", db_host),
                ["localhost", "127.0.0.1"],
                "{db_host}"
            );
            assert_eq!(
                grant_hosts("web1.example.com", db_host),
                ["localhost", "127.0.0.1"],
                "{db_host}"
            );
        }
        assert_eq!(grant_hosts("vm", "10.0.0.5"), ["vm"]);
    }
}
