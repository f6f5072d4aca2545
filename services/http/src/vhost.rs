//! nginx virtual hosts of sites: the site served through its own php-fpm pool with its
//! database credentials passed as `fastcgi_param` (cloaked: settings.php reads them from
//! `$_SERVER`), its aliases served as the site or redirected to it, the `/files` rewrite,
//! and the "site disabled" and "site suspended" pages.
//!
//! Sites on one platform are hostile to each other, so a vhost follows Drupal's
//! recommended nginx configuration and goes further: only the codebase's front
//! controllers run as PHP (never a file a site could have written), source files and
//! hidden files are not served, `sites/` serves only this site's own directory and the
//! shared `sites/all/`, and private files never go out directly.

use berth_hosting::sites::cron;
use std::path::Path;

/// What a site's vhost is made of. Every string here was validated at the API (host
/// names, a clean root path, hex passwords, machine names), so it is safe in the file.
pub struct SiteVhost<'a> {
    pub uri: &'a str,
    pub aliases: &'a [String],
    pub redirection: bool,
    pub root: &'a str,
    /// `127.0.0.1:8080` or `80`.
    pub listen: String,
    /// The http service's port: PHP sees it in the host name, as the browser sent it.
    pub port: u16,
    /// The site's own php-fpm pool.
    pub php_socket: &'a Path,
    /// What the site's PHP may open (`open_basedir`).
    pub open_basedir: &'a str,
    /// nginx's standard FastCGI parameters file.
    pub fastcgi_params: &'a Path,
    pub db: DbParams<'a>,
    pub disabled: bool,
    /// The "site suspended" page, whatever else (its client is suspended).
    pub suspended: bool,
    /// The maintenance page (a restore or migrate is under way).
    pub maintenance: bool,
}

pub struct DbParams<'a> {
    pub host: &'a str,
    pub port: u16,
    pub name: &'a str,
    pub user: &'a str,
    pub password: &'a str,
}

/// The page a disabled site answers with.
pub const DISABLED_TITLE: &str = "Site disabled";
/// The page a suspended site answers with (distinct from disabled: its client is).
pub const SUSPENDED_TITLE: &str = "Site suspended";
/// The page a site answers with while it is being restored or migrated.
pub const MAINTENANCE_TITLE: &str = "Site under maintenance";

/// The scripts of a Drupal codebase that are entry points (Drupal 7 and 8+): the only
/// PHP a vhost runs. Anything else ending in `.php` is answered 404, unread.
const FRONT_CONTROLLERS: &str = r"^/(index|update|install|cron|authorize|xmlrpc)\.php(/|$)|^/core/(install|rebuild|authorize)\.php(/|$)|^/core/modules/statistics/statistics\.php$";

/// Source and metadata files Drupal's .htaccess refuses to serve (its FilesMatch), and
/// Drupal 7's `.info`.
const SOURCE_FILES: &str = r"\.(engine|inc|info|install|make|module|profile|po|sh|.*sql|theme|twig|tpl(\.php)?|xtmpl|yml|yaml)(~|\.sw[op]|\.bak|\.orig|\.save)?$|(^|/)(Entries.*|Repository|Root|Tag|Template|composer\.(json|lock)|web\.config|yarn\.lock|package\.json)$|(^|/)#.*#$|\.php(~|\.sw[op]|\.bak|\.orig|\.save)$";

pub fn render_nginx(v: &SiteVhost) -> String {
    let mut out = format!(
        "# Written by berth for {uri}; a verify rewrites it, so edits here do not last.\n",
        uri = v.uri
    );
    let mut names = vec![v.uri.to_string()];
    if !v.redirection {
        names.extend(v.aliases.iter().cloned());
    }
    out.push_str(&format!(
        "server {{\n    listen {listen};\n    server_name {names};\n    root {root};\n    index index.php;\n",
        listen = v.listen,
        names = names.join(" "),
        root = v.root,
    ));
    let page = if v.suspended {
        Some((
            SUSPENDED_TITLE,
            "is suspended; its owner can contact their provider",
        ))
    } else if v.disabled {
        Some((DISABLED_TITLE, "has been disabled"))
    } else if v.maintenance {
        Some((
            MAINTENANCE_TITLE,
            "is under maintenance and will be back shortly",
        ))
    } else {
        None
    };
    if let Some((title, says)) = page {
        out.push_str(&format!(
            "    location / {{\n        default_type text/html;\n        add_header Retry-After 30 always;\n        return 503 \"<!DOCTYPE html><html><head><title>{title}</title></head><body><h1>{title}</h1><p>The site {uri} {says}.</p></body></html>\";\n    }}\n}}\n",
            uri = v.uri
        ));
    } else {
        let d = &v.db;
        // PHP sees the host nginx chose this server by (an absolute request line wins over
        // the Host header), with the port the browser used.
        let host = if v.port == 80 {
            "$host".to_string()
        } else {
            format!("$host:{}", v.port)
        };
        // What every location that runs PHP passes to the site's pool, after the script.
        let pool = format!(
            "        fastcgi_param HTTP_HOST {host};\n\
             \x20       fastcgi_param HTTP_PROXY \"\";\n\
             \x20       fastcgi_param PHP_ADMIN_VALUE \"open_basedir={basedir}\";\n\
             \x20       fastcgi_param db_type mysql;\n\
             \x20       fastcgi_param db_host {host_db};\n\
             \x20       fastcgi_param db_port {port};\n\
             \x20       fastcgi_param db_name {name};\n\
             \x20       fastcgi_param db_user {user};\n\
             \x20       fastcgi_param db_passwd {password};\n\
             \x20       fastcgi_pass unix:{socket};\n",
            basedir = v.open_basedir,
            socket = v.php_socket.display(),
            host_db = d.host,
            port = d.port,
            name = d.name,
            user = d.user,
            password = d.password,
        );
        // The script a front controller's URL names.
        let front_script = format!(
            "        fastcgi_split_path_info ^(.+?\\.php)(/.*)$;\n\
             \x20       include {params};\n\
             \x20       fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n\
             \x20       fastcgi_param SCRIPT_NAME $fastcgi_script_name;\n\
             \x20       fastcgi_param PATH_INFO $fastcgi_path_info;\n\
             \x20       fastcgi_param QUERY_STRING $query_string;\n",
            params = v.fastcgi_params.display(),
        );
        // berth's cron over HTTP ([`cron::berth_path`]): the key comes in a header, PHP
        // gets Drupal's URL with it, and the request line nginx logs holds none.
        let cron_location = |path: &str, script: &str, uri: &str, query: &str| {
            format!(
                "    location = {path} {{\n\
                 \x20       include {params};\n\
                 \x20       fastcgi_param SCRIPT_FILENAME $document_root{script};\n\
                 \x20       fastcgi_param SCRIPT_NAME {script};\n\
                 \x20       fastcgi_param PATH_INFO \"\";\n\
                 \x20       fastcgi_param REQUEST_URI \"{uri}\";\n\
                 \x20       fastcgi_param QUERY_STRING \"{query}\";\n\
                 \x20       add_header {answered} 1 always;\n\
                 {pool}\
                 \x20   }}\n",
                params = v.fastcgi_params.display(),
                answered = cron::ANSWERED_HEADER,
            )
        };
        // nginx's variable for the header.
        let key = format!("$http_{}", cron::KEY_HEADER.replace('-', "_"));
        out.push_str(
            "    # berth's cron over HTTP, its key in a header (never in a logged URL).\n",
        );
        out.push_str(&cron_location(
            cron::PATH_D7,
            "/cron.php",
            &format!("/cron.php?cron_key={key}"),
            &format!("cron_key={key}"),
        ));
        out.push_str(&cron_location(
            cron::PATH_D8,
            "/index.php",
            &format!("/cron/{key}"),
            "",
        ));
        out.push_str(&format!(
            "    # Regular expressions are tried in order and the first match wins; every one\n\
             \x20   # but the front controllers' only refuses.\n\
             \x20   location ~ (^|/)\\.(?!well-known/) {{ return 404; }}\n\
             \x20   location ~* \"{source}\" {{ return 404; }}\n\
             \x20   location ~ \"{front}\" {{\n\
             {front_script}{pool}\
             \x20   }}\n\
             \x20   # Any other PHP: not run, not shown.\n\
             \x20   location ~* \\.(php[0-9]?|phar|phtml|pht)(/|$) {{ return 404; }}\n\
             \x20   # Of sites/, only this site's own directory and the shared sites/all/.\n\
             \x20   location /sites/ {{ return 404; }}\n\
             \x20   location /sites/all/ {{ try_files $uri =404; }}\n\
             \x20   # What the site wrote is served only if the site owns what it names: a link\n\
             \x20   # it planted does not hand out another site's files.\n\
             \x20   location /sites/{uri}/ {{\n\
             \x20       disable_symlinks if_not_owner from=$document_root;\n\
             \x20       try_files $uri =404;\n\
             \x20   }}\n\
             \x20   # Image styles are made on first request, by Drupal.\n\
             \x20   location /sites/{uri}/files/ {{\n\
             \x20       disable_symlinks if_not_owner from=$document_root;\n\
             \x20       try_files $uri /index.php?$query_string;\n\
             \x20   }}\n\
             \x20   location ^~ /sites/{uri}/private/ {{ return 404; }}\n\
             \x20   location ^~ /vendor/ {{ return 404; }}\n\
             \x20   # /files/... is the site's files directory, whatever the site is called.\n\
             \x20   location ^~ /files/ {{ rewrite ^/files/(.*)$ /sites/{uri}/files/$1 last; }}\n\
             \x20   location / {{ try_files $uri /index.php?$query_string; }}\n}}\n",
            source = SOURCE_FILES,
            front = FRONT_CONTROLLERS,
            uri = v.uri,
        ));
    }
    if v.redirection && !v.aliases.is_empty() {
        out.push_str(&format!(
            "server {{\n    listen {listen};\n    server_name {aliases};\n    return 301 http://{uri}$request_uri;\n}}\n",
            listen = v.listen,
            aliases = v.aliases.join(" "),
            uri = v.uri
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vhost(redirection: bool, disabled: bool) -> String {
        render_nginx(&SiteVhost {
            redirection,
            ..base(disabled)
        })
    }

    fn base(disabled: bool) -> SiteVhost<'static> {
        SiteVhost {
            uri: "www.example.com",
            aliases: Box::leak(Box::new(vec![
                "example.com".to_string(),
                "shop.example.com".to_string(),
            ])),
            redirection: false,
            root: "/var/aegir/platforms/d10",
            listen: "127.0.0.1:8080".into(),
            port: 8080,
            php_socket: Path::new("/var/lib/berth/run/php/200001.sock"),
            open_basedir: "/var/aegir/platforms/d10/:/var/lib/berth/site-tmp/200001/",
            fastcgi_params: Path::new("/etc/nginx/fastcgi_params"),
            db: DbParams {
                host: "127.0.0.1",
                port: 3306,
                name: "wwwexamplecom_abc123",
                user: "wwwexamplecom_abc123",
                password: "0123abcd",
            },
            disabled,
            suspended: false,
            maintenance: false,
        }
    }

    #[test]
    fn aliases_are_served_or_redirected() {
        let served = vhost(false, false);
        assert!(served.contains("server_name www.example.com example.com shop.example.com;"));
        assert!(!served.contains("return 301"));
        let redirected = vhost(true, false);
        assert!(redirected.contains("server_name www.example.com;"));
        assert!(redirected.contains(
            "server_name example.com shop.example.com;\n    return 301 http://www.example.com$request_uri;"
        ));
    }

    #[test]
    fn credentials_go_to_php_and_files_are_rewritten() {
        let v = vhost(false, false);
        assert!(v.contains("fastcgi_param db_passwd 0123abcd;"));
        assert!(v.contains("rewrite ^/files/(.*)$ /sites/www.example.com/files/$1 last;"));
    }

    #[test]
    fn only_front_controllers_reach_the_sites_own_pool() {
        let v = vhost(false, false);
        // The front controllers, and cron's two URLs.
        assert_eq!(v.matches("fastcgi_pass").count(), 3, "{v}");
        assert_eq!(
            v.matches("fastcgi_pass unix:/var/lib/berth/run/php/200001.sock;")
                .count(),
            3
        );
        assert_eq!(
            v.matches("open_basedir=/var/aegir/platforms/d10/:").count(),
            3
        );
        assert!(
            v.contains("open_basedir=/var/aegir/platforms/d10/:/var/lib/berth/site-tmp/200001/")
        );
        assert!(v.contains("location /sites/ { return 404; }"));
        assert!(v.contains("location ^~ /sites/www.example.com/private/ { return 404; }"));
        // The pool's location comes before the one that refuses every other PHP file.
        let front = v.find("fastcgi_pass").unwrap();
        let refuse = v.find("php[0-9]?|phar").unwrap();
        assert!(front < refuse);
    }

    #[test]
    fn berths_cron_gives_php_drupals_url_with_the_key_from_a_header() {
        let v = vhost(false, false);
        let block = |start: &str| {
            let at = v.find(start).unwrap_or_else(|| panic!("no {start} in {v}"));
            v[at..at + v[at..].find("\n    }").unwrap()].to_string()
        };
        let d7 = block("location = /.berth-cron/7 {");
        assert!(
            d7.contains("SCRIPT_FILENAME $document_root/cron.php;"),
            "{d7}"
        );
        assert!(
            d7.contains("REQUEST_URI \"/cron.php?cron_key=$http_x_berth_cron_key\";"),
            "{d7}"
        );
        assert!(
            d7.contains("QUERY_STRING \"cron_key=$http_x_berth_cron_key\";"),
            "{d7}"
        );
        let d8 = block("location = /.berth-cron/8 {");
        assert!(
            d8.contains("SCRIPT_FILENAME $document_root/index.php;"),
            "{d8}"
        );
        assert!(
            d8.contains("REQUEST_URI \"/cron/$http_x_berth_cron_key\";"),
            "{d8}"
        );
        for b in [&d7, &d8] {
            // Set after the standard parameters, which they replace.
            let include = b.find("include /etc/nginx/fastcgi_params;").unwrap();
            assert!(include < b.find("REQUEST_URI").unwrap(), "{b}");
            assert!(b.contains("fastcgi_param db_passwd 0123abcd;"), "{b}");
            assert!(b.contains("fastcgi_param HTTP_PROXY \"\";"), "{b}");
            assert!(b.contains("open_basedir=/var/aegir/platforms/d10/:"), "{b}");
            assert!(b.contains("add_header x-berth-cron 1 always;"), "{b}");
        }
        assert_eq!(cron::PATH_D7, "/.berth-cron/7");
        assert_eq!(cron::PATH_D8, "/.berth-cron/8");
        assert_eq!(cron::KEY_HEADER, "x-berth-cron-key");
    }

    #[test]
    fn a_disabled_site_shows_the_disabled_page_and_no_credentials() {
        let v = vhost(false, true);
        assert!(v.contains(DISABLED_TITLE));
        assert!(!v.contains("0123abcd"));
        assert!(!v.contains("fastcgi_pass"));
    }

    #[test]
    fn a_suspended_site_shows_the_suspended_page_whatever_its_status() {
        for disabled in [false, true] {
            let mut vh = SiteVhost {
                suspended: true,
                ..base(disabled)
            };
            let v = render_nginx(&vh);
            assert!(v.contains(SUSPENDED_TITLE), "{v}");
            assert!(!v.contains(DISABLED_TITLE));
            assert!(!v.contains("0123abcd") && !v.contains("fastcgi_pass"));
            vh.maintenance = true;
            assert!(render_nginx(&vh).contains(SUSPENDED_TITLE));
        }
    }
}
