//! Restore drills: the throwaway site a backup is restored into (its name, database and
//! unix user, made from the task when it is planned), and the check that it serves the
//! site's own content. Pure; the http worker requests the pages, the state service reads
//! the facts.

use berth_contracts::task::DbNames;
use uuid::Uuid;

/// The domain drill sites are named under when `BERTH_DRILL_DOMAIN` is not set: `.invalid`
/// is reserved (RFC 2606), so no one can register it or point it anywhere.
pub const DEFAULT_DRILL_DOMAIN: &str = "drill.berth.invalid";

/// A backup to drill, as the state service found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillBackup {
    pub id: Uuid,
    pub path: String,
    /// The server holding its file.
    pub server: String,
}

/// The throwaway site of one drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillFacts {
    /// `drill-<12 hex>.<drill domain>`.
    pub uri: String,
    pub db: DbNames,
    /// A fresh uid from the site uid sequence: the drill's PHP never runs as the site's.
    pub unix_uid: u32,
    pub backup: DrillBackup,
}

/// The drill site's label and database names come from the random part of the task id
/// (a v7 uuid's last 12 hex digits): unique per drill, and the same if the task is
/// planned again.
pub fn drill_facts(task_id: Uuid, domain: &str, unix_uid: u32, backup: DrillBackup) -> DrillFacts {
    let simple = task_id.simple().to_string();
    let unique = &simple[simple.len() - 12..];
    let name = format!("drill_{unique}");
    DrillFacts {
        uri: format!("drill-{unique}.{domain}"),
        db: DbNames {
            name: name.clone(),
            user: name,
        },
        unix_uid,
        backup,
    }
}

/// `host` is the drill domain or a name under it: no customer site or alias may have it.
pub fn under_drill_domain(host: &str, domain: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    host == domain || host.ends_with(&format!(".{domain}"))
}

/// A front page as requested: its HTTP status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub status: u16,
    pub body: String,
}

/// The page's `<title>`, trimmed (a Drupal front page titles itself with the site's name).
pub fn title(body: &str) -> Option<&str> {
    let lower = body.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    Some(body[start..end].trim()).filter(|t| !t.is_empty())
}

/// The check: both answer 200 and the drill's page has the original's title (the site's
/// name, read from its database). The body is not compared whole: it may name its own
/// database, carry tokens or the time. `Ok` is the common title; `Err` says what did not
/// match, in words for the task log (the pages are the sites' public front pages).
pub fn check(original: &Page, drill: &Page) -> Result<String, String> {
    const SHOWN: usize = 200;
    let shown = |b: &str| -> String {
        let b = b.trim();
        let cut: String = b.chars().take(SHOWN).collect();
        if cut.len() < b.len() {
            format!("{cut}…")
        } else {
            cut
        }
    };
    if original.status != 200 {
        return Err(format!(
            "the original site does not serve its front page (HTTP {}): nothing to compare the drill with",
            original.status
        ));
    }
    let Some(want) = title(&original.body) else {
        return Err("the original site's front page has no title to compare".into());
    };
    if drill.status != 200 {
        return Err(format!(
            "the restored copy answered HTTP {} instead of the site's front page: {}",
            drill.status,
            shown(&drill.body)
        ));
    }
    match title(&drill.body) {
        Some(got) if got == want => Ok(want.to_string()),
        Some(got) => Err(format!(
            "the restored copy serves \"{got}\", the site serves \"{want}\": the backup is not this site's"
        )),
        None => Err(format!(
            "the restored copy's front page has no title (the site's is \"{want}\"): {}",
            shown(&drill.body)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(status: u16, body: &str) -> Page {
        Page {
            status,
            body: body.into(),
        }
    }

    #[test]
    fn drill_names_are_under_the_drill_domain_and_unique_to_the_task() {
        let id: Uuid = "0193a0b2-7c4d-7e5f-8a9b-0c1d2e3f4a5b".parse().unwrap();
        let b = DrillBackup {
            id: Uuid::nil(),
            path: "/b/x.tar.zst".into(),
            server: "server_master".into(),
        };
        let d = drill_facts(id, DEFAULT_DRILL_DOMAIN, 200_123, b);
        assert_eq!(d.uri, "drill-0c1d2e3f4a5b.drill.berth.invalid");
        assert_eq!(d.db.name, "drill_0c1d2e3f4a5b");
        assert_eq!(d.db.user, d.db.name);
        assert!(crate::SiteName::parse(&d.uri).is_ok());
        assert!(under_drill_domain(&d.uri, DEFAULT_DRILL_DOMAIN));
    }

    #[test]
    fn only_names_under_the_drill_domain_are_its() {
        let d = "drill.berth.invalid";
        assert!(under_drill_domain("drill.berth.invalid", d));
        assert!(under_drill_domain("X.Drill.Berth.Invalid.", d));
        assert!(!under_drill_domain("notdrill.berth.invalid", d));
        assert!(!under_drill_domain("drill.berth.invalid.example.com", d));
        assert!(!under_drill_domain("www.example.com", d));
    }

    #[test]
    fn a_drill_passes_only_when_the_copy_serves_the_sites_name() {
        let site = page(
            200,
            "<html><head><title>My shop</title></head><body>Served from database a_1</body>",
        );
        let good = page(
            200,
            "<html><head><title> My shop </title></head><body>Served from database drill_1</body>",
        );
        assert_eq!(check(&site, &good).unwrap(), "My shop");
        // Another site's database in the backup.
        let other = page(200, "<title>Other shop</title>");
        let e = check(&site, &other).unwrap_err();
        assert!(
            e.contains("\"Other shop\"") && e.contains("\"My shop\""),
            "{e}"
        );
        // An empty dump: the fixture's (and Drupal's) error page.
        let empty = page(
            500,
            "The website encountered an unexpected error: the site is not installed in its database.",
        );
        let e = check(&site, &empty).unwrap_err();
        assert!(e.contains("HTTP 500") && e.contains("not installed"), "{e}");
        // A page without a title, or nothing to compare with.
        assert!(check(&site, &page(200, "hello")).is_err());
        assert!(check(&page(404, "No site is installed here."), &good).is_err());
        assert!(check(&page(200, "<title></title>"), &page(200, "<title></title>")).is_err());
        // A long body is cut in the message.
        let long = page(502, &"x".repeat(5000));
        assert!(check(&site, &long).unwrap_err().len() < 400);
    }
}
