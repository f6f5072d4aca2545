//! Each site's own php-fpm pool and unix user.
//!
//! Sites on one platform share a codebase but must not share secrets: every site's PHP
//! runs in a pool of its own, under a unix user of its own (a bare uid from the range
//! [`SITE_UIDS`], no passwd entry needed, with a group of the same number), listening on
//! a socket only the web server may open. `pm = ondemand`: an idle site costs no process.
//!
//! The pool's text depends only on the uid and berth's data root, never on the platform
//! or the uri: a migrate or a rename does not touch it, so a pool is written once at
//! install and removed with the site. What does follow the platform (`open_basedir`) comes
//! with each request from the site's vhost (`PHP_ADMIN_VALUE`), which only nginx can send:
//! the socket is the web server's alone.
//!
//! Files a site's PHP may write (`files/`, `private/`, its temporary directory) are the
//! site user's; the codebase, `sites/<uri>/` itself and `settings.php` are root's, the
//! settings readable by the site's group only. Nothing a site can write is ever run as PHP
//! (the vhost passes only the codebase's front controllers).

use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};
use std::path::{Path, PathBuf};

/// The uids berth gives sites (a PostgreSQL sequence hands them out); kept apart from the
/// system's and people's users, and named in the firewall rule that keeps sites' PHP away
/// from berth's own services.
pub const SITE_UIDS: std::ops::RangeInclusive<u32> = 200_000..=999_999;

/// The group the web server runs as: it reads a site's public files and opens the pools'
/// sockets.
pub const WEB_GROUP: &str = "www-data";

/// The pools of a server: `<data_root>/config/<server>/php-fpm/pool.d`, included by
/// php-fpm's main configuration.
pub fn pool_dir(data_root: &Path, server: &str) -> PathBuf {
    data_root
        .join("config")
        .join(server)
        .join("php-fpm")
        .join("pool.d")
}

/// The pool file of a site user.
pub fn pool_path(data_root: &Path, server: &str, uid: u32) -> PathBuf {
    pool_dir(data_root, server).join(format!("site-{uid}.conf"))
}

/// The socket of a site user's pool (short: unix socket paths are at most 107 bytes).
pub fn socket_path(data_root: &Path, uid: u32) -> PathBuf {
    data_root
        .join("run")
        .join("php")
        .join(format!("{uid}.sock"))
}

/// A site user's temporary directory (uploads in progress, sessions, drush's home): out of
/// every web root, the user's alone.
pub fn tmp_dir(data_root: &Path, uid: u32) -> PathBuf {
    data_root.join("site-tmp").join(uid.to_string())
}

/// What `open_basedir` allows a site's PHP: its platform's codebase (where the other
/// sites' directories are closed to it by their modes) and its temporary directory.
pub fn open_basedir(root: &Path, tmp: &Path) -> String {
    format!("{}/:{}/", root.display(), tmp.display())
}

/// The pool of a site user. Every value is a number or a path berth made.
pub fn render_pool(data_root: &Path, uid: u32) -> String {
    let socket = socket_path(data_root, uid);
    let tmp = tmp_dir(data_root, uid);
    let (socket, tmp) = (socket.display(), tmp.display());
    format!(
        "; Written by berth for the site of unix user {uid}; the site tasks rewrite and remove it.\n\
         [site-{uid}]\n\
         user = {uid}\n\
         group = {uid}\n\
         listen = {socket}\n\
         listen.owner = {WEB_GROUP}\n\
         listen.group = {WEB_GROUP}\n\
         listen.mode = 0660\n\
         pm = ondemand\n\
         pm.max_children = 8\n\
         pm.process_idle_timeout = 10s\n\
         pm.max_requests = 500\n\
         clear_env = yes\n\
         security.limit_extensions = .php\n\
         env[TMPDIR] = {tmp}\n\
         php_admin_value[upload_tmp_dir] = {tmp}\n\
         php_admin_value[sys_temp_dir] = {tmp}\n\
         php_admin_value[session.save_path] = {tmp}\n\
         php_admin_flag[allow_url_include] = off\n\
         php_admin_flag[expose_php] = off\n"
    )
}

/// The web server's group id, when the group exists.
pub fn web_gid() -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == WEB_GROUP).then(|| f.nth(1)?.parse().ok())?
    })
}

/// Sets owner, group and mode of one path without following a symlink (a site may plant
/// links in what it can write: they must not hand it what they point at).
fn own(path: &Path, uid: Option<u32>, gid: Option<u32>, mode: Option<u32>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return lchown(path, uid, gid);
    }
    if uid.is_some_and(|u| u != meta.uid()) || gid.is_some_and(|g| g != meta.gid()) {
        lchown(path, uid, gid)?;
    }
    if let Some(mode) = mode
        && meta.permissions().mode() & 0o7777 != mode
    {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Hands everything under `dir` (not `dir` itself) to `uid` (and `gid` when given), never
/// following a symlink. Returns how many entries changed hands.
fn own_tree(dir: &Path, uid: u32, gid: Option<u32>) -> std::io::Result<usize> {
    let mut changed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let meta = std::fs::symlink_metadata(e.path())?;
            if meta.uid() != uid || gid.is_some_and(|g| g != meta.gid()) {
                lchown(e.path(), Some(uid), gid)?;
                changed += 1;
            }
            if meta.file_type().is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(changed)
}

/// Gives a site directory the owners and modes its isolation rests on, and makes the
/// site user's temporary directory. Safe to run again and again (every site step that
/// runs the site's code or serves it does): it only changes what is not as it should be,
/// which after a restore, a clone or a migrate is the whole unpacked tree.
///
/// - `sites/<uri>/`: root, group the site's, 0751: the site reads it, nginx (another user)
///   may pass through to `files/`, other sites may not list it;
/// - `settings.php` (and `local.settings.php`): root, group the site's, 0640;
/// - `files/`: the site's, group the web server's, 2750 (nginx serves it; nobody else);
/// - `private/`: the site's, group the site's, 0770 (served only through the site's PHP);
/// - the temporary directory: the site's, 0700.
pub fn prepare_site(site_dir: &Path, data_root: &Path, uid: u32) -> std::io::Result<Vec<String>> {
    if !SITE_UIDS.contains(&uid) {
        return Err(std::io::Error::other(format!(
            "unix user {uid} is not a site user ({}-{})",
            SITE_UIDS.start(),
            SITE_UIDS.end()
        )));
    }
    let mut log = Vec::new();
    let tmp = tmp_dir(data_root, uid);
    if let Some(parent) = tmp.parent() {
        std::fs::create_dir_all(parent)?;
        own(parent, Some(0), Some(0), Some(0o711))?;
    }
    if !tmp.exists() {
        std::fs::create_dir(&tmp)?;
        log.push(format!("made {} for unix user {uid}", tmp.display()));
    }
    own(&tmp, Some(uid), Some(uid), Some(0o700))?;

    own(site_dir, Some(0), Some(uid), Some(0o751))?;
    for name in ["settings.php", "local.settings.php"] {
        let p = site_dir.join(name);
        if p.symlink_metadata().is_ok_and(|m| m.file_type().is_file()) {
            own(&p, Some(0), Some(uid), Some(0o640))?;
        }
    }
    let web = web_gid();
    let files = site_dir.join("files");
    if files.is_dir() {
        own(&files, Some(uid), web, Some(0o2750))?;
        let n = own_tree(&files, uid, web)?;
        if n > 0 {
            log.push(format!(
                "{n} entries under files/ handed to unix user {uid}"
            ));
        }
    }
    let private = site_dir.join("private");
    if private.is_dir() {
        own(&private, Some(uid), Some(uid), Some(0o770))?;
        let n = own_tree(&private, uid, Some(uid))?;
        if n > 0 {
            log.push(format!(
                "{n} entries under private/ handed to unix user {uid}"
            ));
        }
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_runs_as_its_site_and_only_the_web_server_may_open_it() {
        let pool = render_pool(Path::new("/var/lib/berth"), 200_017);
        for line in [
            "[site-200017]",
            "user = 200017",
            "group = 200017",
            "listen = /var/lib/berth/run/php/200017.sock",
            "listen.owner = www-data",
            "listen.mode = 0660",
            "pm = ondemand",
            "clear_env = yes",
            "security.limit_extensions = .php",
            "php_admin_value[upload_tmp_dir] = /var/lib/berth/site-tmp/200017",
        ] {
            assert!(pool.lines().any(|l| l == line), "{line} missing:\n{pool}");
        }
    }

    #[test]
    fn sockets_fit_a_unix_socket_path() {
        // sun_path holds 108 bytes with its NUL.
        let long_root = Path::new("/tmp/berth-test-0123456789abcdef0123456789abcdef/data");
        assert!(socket_path(long_root, 999_999).as_os_str().len() < 108);
    }

    #[test]
    fn only_site_users_are_prepared() {
        let dir = std::env::temp_dir().join(format!("berth-pool-{}", std::process::id()));
        let err = prepare_site(&dir, &dir, 0).unwrap_err();
        assert!(err.to_string().contains("not a site user"), "{err}");
        let err = prepare_site(&dir, &dir, 33).unwrap_err();
        assert!(err.to_string().contains("not a site user"), "{err}");
    }
}
