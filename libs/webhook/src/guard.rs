//! The URL guard: webhook endpoints may not reach the host's own or private networks
//! (a caller of the API could otherwise make berth probe them), unless configuration
//! allows it (`BERTH_WEBHOOKS_ALLOW_PRIVATE`). The addresses are checked after the host
//! name is resolved, at creation and again at each delivery (DNS may change).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("`{0}` is not a URL")]
    NotUrl(String),
    #[error("a webhook URL is http:// or https://, not {0}://")]
    Scheme(String),
    #[error("a webhook URL names a host")]
    NoHost,
    #[error("a webhook URL carries no user name or password")]
    Credentials,
    #[error(
        "`{host}` resolves to {addr}, a {what} address: webhooks may not reach loopback or \
         private networks (BERTH_WEBHOOKS_ALLOW_PRIVATE allows it)"
    )]
    Forbidden {
        host: String,
        addr: IpAddr,
        what: &'static str,
    },
}

/// Checks the URL's form; its host and port (for resolving).
pub fn check_url(text: &str) -> Result<(url::Url, String, u16), GuardError> {
    let url = url::Url::parse(text).map_err(|_| GuardError::NotUrl(text.to_owned()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(GuardError::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(GuardError::Credentials);
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(GuardError::NoHost),
    };
    let port = url.port_or_known_default().ok_or(GuardError::NoHost)?;
    Ok((url, host, port))
}

/// What kind of forbidden address `addr` is, if it is one.
pub fn forbidden(addr: IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V4(a) => forbidden_v4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(a),
        },
    }
}

fn forbidden_v4(a: Ipv4Addr) -> Option<&'static str> {
    let [o1, o2, ..] = a.octets();
    if a.is_loopback() {
        Some("loopback")
    } else if a.is_unspecified() || o1 == 0 {
        Some("unspecified")
    } else if a.is_private() || (o1 == 100 && (64..128).contains(&o2)) {
        Some("private")
    } else if a.is_link_local() {
        Some("link-local")
    } else if a.is_multicast() || a.is_broadcast() || o1 >= 240 {
        Some("multicast or reserved")
    } else {
        None
    }
}

fn forbidden_v6(a: Ipv6Addr) -> Option<&'static str> {
    let first = a.segments()[0];
    if a.is_loopback() {
        Some("loopback")
    } else if a.is_unspecified() {
        Some("unspecified")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if a.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// Refuses `addr` (which `host` resolved to) unless it is public or `allow_private`.
pub fn check_addr(host: &str, addr: IpAddr, allow_private: bool) -> Result<(), GuardError> {
    match forbidden(addr) {
        Some(what) if !allow_private => Err(GuardError::Forbidden {
            host: host.to_owned(),
            addr,
            what,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_forbidden() {
        for (a, what) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("169.254.169.254", "link-local"),
            ("224.0.0.1", "multicast or reserved"),
            ("255.255.255.255", "multicast or reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
        ] {
            let addr: IpAddr = a.parse().unwrap();
            assert_eq!(forbidden(addr), Some(what), "{a}");
            assert!(check_addr("h", addr, false).is_err(), "{a}");
            assert!(
                check_addr("h", addr, true).is_ok(),
                "{a} allowed by configuration"
            );
        }
        for a in [
            "93.184.215.14",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
        ] {
            assert_eq!(forbidden(a.parse().unwrap()), None, "{a}");
        }
        let e = check_addr("hooks.example", "10.0.0.5".parse().unwrap(), false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hooks.example") && e.contains("10.0.0.5") && e.contains("private"),
            "{e}"
        );
    }

    #[test]
    fn urls_are_http_with_a_host_and_no_credentials() {
        let (_, host, port) = check_url("https://hooks.example.com/in").unwrap();
        assert_eq!((host.as_str(), port), ("hooks.example.com", 443));
        let (_, host, port) = check_url("http://[::1]:8080/x").unwrap();
        assert_eq!((host.as_str(), port), ("::1", 8080));
        assert_eq!(check_url("ftp://x/"), Err(GuardError::Scheme("ftp".into())));
        assert_eq!(check_url("https://u:p@x/"), Err(GuardError::Credentials));
        assert!(matches!(check_url("not a url"), Err(GuardError::NotUrl(_))));
        assert!(matches!(
            check_url("file:///etc/passwd"),
            Err(GuardError::Scheme(_))
        ));
    }
}
