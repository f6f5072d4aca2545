//! nginx virtual hosts of sites: the site served through php-fpm with its database
//! credentials passed as `fastcgi_param` (cloaked: settings.php reads them from
//! `$_SERVER`), its aliases served as the site or redirected to it, the `/files` rewrite,
//! and the "site disabled" page.

/// What a site's vhost is made of. Every string here was validated at the API (host
/// names, a clean root path, hex passwords, machine names), so it is safe in the file.
pub struct SiteVhost<'a> {
    pub uri: &'a str,
    pub aliases: &'a [String],
    pub redirection: bool,
    pub root: &'a str,
    /// `127.0.0.1:8080` or `80`.
    pub listen: String,
    /// `unix:/run/php/php8.2-fpm.sock` or `127.0.0.1:9000`.
    pub php_fpm: &'a str,
    pub db: DbParams<'a>,
    pub disabled: bool,
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
/// The page a site answers with while it is being restored or migrated.
pub const MAINTENANCE_TITLE: &str = "Site under maintenance";

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
    let page = if v.disabled {
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
        out.push_str(&format!(
            "    # Hidden files, private files and the settings never go out as they are.\n\
             \x20   location ~ /\\. {{ deny all; }}\n\
             \x20   location ^~ /sites/{uri}/private/ {{ deny all; }}\n\
             \x20   location ~ ^/sites/[^/]+/(local\\.)?settings\\.php$ {{ deny all; }}\n\
             \x20   # /files/... is the site's files directory, whatever the site is called.\n\
             \x20   location ^~ /files/ {{ rewrite ^/files/(.*)$ /sites/{uri}/files/$1 last; }}\n\
             \x20   location ~ \\.php$ {{\n\
             \x20       try_files $uri =404;\n\
             \x20       fastcgi_pass {php};\n\
             \x20       include /etc/nginx/fastcgi_params;\n\
             \x20       fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n\
             \x20       fastcgi_param db_type mysql;\n\
             \x20       fastcgi_param db_host {host};\n\
             \x20       fastcgi_param db_port {port};\n\
             \x20       fastcgi_param db_name {name};\n\
             \x20       fastcgi_param db_user {user};\n\
             \x20       fastcgi_param db_passwd {password};\n\
             \x20   }}\n\
             \x20   location / {{ try_files $uri /index.php?$query_string; }}\n}}\n",
            uri = v.uri,
            php = v.php_fpm,
            host = d.host,
            port = d.port,
            name = d.name,
            user = d.user,
            password = d.password,
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
            uri: "www.example.com",
            aliases: &["example.com".into(), "shop.example.com".into()],
            redirection,
            root: "/var/aegir/platforms/d10",
            listen: "127.0.0.1:8080".into(),
            php_fpm: "127.0.0.1:9000",
            db: DbParams {
                host: "127.0.0.1",
                port: 3306,
                name: "wwwexamplecom_abc123",
                user: "wwwexamplecom_abc123",
                password: "0123abcd",
            },
            disabled,
            maintenance: false,
        })
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
    fn a_disabled_site_shows_the_disabled_page_and_no_credentials() {
        let v = vhost(false, true);
        assert!(v.contains(DISABLED_TITLE));
        assert!(!v.contains("0123abcd"));
        assert!(!v.contains("fastcgi_pass"));
    }
}
