//! The properties the fuzz targets in `fuzz/` check, one function per target, each taking
//! the raw fuzz input. They live here, not in the fuzz crate, so that a plain test
//! (`tests/fuzz_corpus.rs`) replays the committed corpus through the same checks on stable
//! Rust, without libFuzzer. A broken property panics, which is what a fuzzer reports.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use berth_contracts::{Package, PackageType, TargetKind};
use chrono::NaiveDate;
use serde_json::Value;

use berth_hosting::compare::{self, Verdict, Version};
use berth_hosting::names::{self, HostName, PlatformName, ServerName, SiteName};
use berth_hosting::tasks::{self, BackupArgs, CloneArgs, MigrateArgs, NoopArgs, TaskType};
use berth_package_scan as packages;
use berth_zone::{self as zone, Record, RecordType, SiteRecords, Zone};

/// A fuzz target's check: panics on a broken property.
pub type Check = fn(&[u8]);

/// Every target, by the name of its directory under `fuzz/corpus/`.
pub const TARGETS: [(&str, Check); 9] = [
    ("names", names),
    ("info_d7", info_d7),
    ("info_yml", info_yml),
    ("php", php),
    ("scan", scan),
    ("zone_parse", zone_parse),
    ("zone_model", zone_model),
    ("tasks", tasks),
    ("versions", versions),
];

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// The input's first line and the rest.
fn first_line(data: &[u8]) -> (String, String) {
    let t = text(data);
    match t.split_once('\n') {
        Some((a, b)) => (a.to_string(), b.to_string()),
        None => (t, String::new()),
    }
}

// ---------------------------------------------------------------------------------------
// names.rs

/// Each line is tried as every kind of name. What parses displays to a string that parses
/// to the same value; a host's derived server name is a server name.
pub fn names(data: &[u8]) {
    let t = text(data);
    let lines: Vec<&str> = t.split('\n').collect();
    for (n, s) in lines.iter().copied().enumerate() {
        let host = HostName::parse(s);
        assert_eq!(host, HostName::parse(s), "deterministic");
        if let Ok(h) = &host {
            assert_eq!(h.as_str(), s);
            assert!(s.len() <= 253 && !s.starts_with('.') && !s.contains(".."));
            assert_eq!(HostName::parse(&h.to_string()).as_ref(), Ok(h));
            let derived = ServerName::for_host(h);
            // The name a new server gets is one the API can parse back (GET
            // /servers/{name}), or the server is refused up front.
            if let Ok(new) = ServerName::for_new_server(h, None) {
                assert_eq!(new, derived);
                assert_eq!(ServerName::parse(new.as_str()).as_ref(), Ok(&new));
                assert_eq!(
                    ServerName::for_new_server(h, Some(new.as_str())).as_ref(),
                    Ok(&new)
                );
            } else {
                assert!(ServerName::parse(derived.as_str()).is_err());
            }
            let asked = lines.get(n + 1).copied().unwrap_or("server_master");
            if let Ok(named) = ServerName::for_new_server(h, Some(asked)) {
                assert_eq!(ServerName::parse(named.as_str()).as_ref(), Ok(&named));
                assert!(named.is_master() || named == derived);
            }
            if let Ok(z) = zone::zone_for(h, &[]) {
                assert!(zone::in_zone(h.as_str(), &z), "{h} in {z}");
                assert!(HostName::parse(&z).is_ok(), "{z}");
            }
        }
        // A site name is a normalised host name that normalises to itself, with a dot,
        // not an IP, and short enough for nginx's hash bucket and a vhost file name.
        let site = SiteName::parse(s);
        assert_eq!(site, SiteName::parse(s), "deterministic");
        if let Ok(n) = &site {
            assert_eq!(SiteName::parse(n.as_str()).as_ref(), Ok(n), "idempotent");
            assert_eq!(HostName::parse(n.as_str()).as_ref(), Ok(n.host()));
            assert!(n.as_str().len() <= names::SITE_NAME_MAX && n.as_str().contains('.'));
            assert!(n.as_str().parse::<std::net::IpAddr>().is_err());
            assert!(
                names::nginx_bucket_bytes(n.as_str().len())
                    <= names::NGINX_SERVER_NAMES_HASH_BUCKET_SIZE
            );
        }
        if let Ok(h) = &host
            && h.as_str().contains('.')
            && h.as_str().len() <= names::SITE_NAME_MAX
            && !h
                .as_str()
                .rsplit('.')
                .next()
                .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()) || l.starts_with("0x"))
        {
            assert_eq!(site.as_ref().map(SiteName::host), Ok(h), "{s}");
        }
        if let Ok(sn) = ServerName::parse(s) {
            let bare = s.strip_prefix('@').unwrap_or(s);
            assert_eq!(sn.as_str(), bare);
            assert!(sn.as_str().starts_with("server_") && sn.as_str().len() <= 64);
            assert_eq!(ServerName::parse(&sn.to_string()).as_ref(), Ok(&sn));
            assert_eq!(ServerName::parse(&format!("@{sn}")).as_ref(), Ok(&sn));
            assert_eq!(sn.is_master(), sn == ServerName::master());
        }
        if let Ok(p) = PlatformName::parse(s) {
            assert_eq!(p.as_str(), s.strip_prefix('@').unwrap_or(s));
            assert!(p.as_str().starts_with("platform_") && p.as_str().len() <= 64);
            assert_eq!(PlatformName::parse(&p.to_string()).as_ref(), Ok(&p));
        }
        if let Ok(r) = names::parse_root(s) {
            assert_eq!(r, s);
            assert!(r.starts_with('/') && r.len() > 1 && !r.ends_with('/'));
            assert!(
                r[1..]
                    .split('/')
                    .all(|p| !p.is_empty() && p != "." && p != "..")
            );
            assert_eq!(names::parse_root(&r), Ok(r.clone()));
        }
    }
}

// ---------------------------------------------------------------------------------------
// packages.rs

/// A Drupal 7 `.info` file: no panic, the same answer twice, keys as Drupal allows them.
pub fn info_d7(data: &[u8]) {
    let t = text(data);
    let pairs = packages::parse_info_pairs(&t);
    assert_eq!(pairs, packages::parse_info_pairs(&t));
    for (k, _) in &pairs {
        assert!(!k.is_empty() && !k.contains(['=', ';']), "key {k:?}");
        assert_eq!(k.trim(), k);
    }
    let info = packages::parse_info(&t);
    assert_eq!(info, packages::parse_info(&t));
    for d in &info.dependencies {
        assert!(
            !d.is_empty() && !d.contains([' ', '(', ':']),
            "dependency {d:?}"
        );
    }
    // A leading byte-order mark makes no difference.
    if !t.starts_with('\u{feff}') {
        assert_eq!(packages::parse_info(&format!("\u{feff}{t}")), info);
    }
}

/// A Drupal 8+ `.info.yml` file: no panic, the same answer twice.
pub fn info_yml(data: &[u8]) {
    let t = text(data);
    let map = packages::parse_info_yml_map(&t);
    assert_eq!(map, packages::parse_info_yml_map(&t));
    for k in map.keys() {
        assert!(!k.is_empty());
    }
    let info = packages::parse_info_yml(&t);
    assert_eq!(info, packages::parse_info_yml(&t));
    for d in info.dependencies.iter().chain(&info.install) {
        assert!(
            !d.is_empty() && !d.contains([' ', '(', ':']),
            "dependency {d:?}"
        );
    }
    if !t.starts_with('\u{feff}') {
        assert_eq!(packages::parse_info_yml(&format!("\u{feff}{t}")), info);
    }
}

/// PHP files (the first line is the module's name, the rest the file): core versions and
/// schema versions; and the path helpers on the first line.
pub fn php(data: &[u8]) {
    let (module, src) = first_line(data);
    let schema = packages::schema_version(&src, &module);
    assert_eq!(schema, packages::schema_version(&src, &module));
    if let Some(n) = schema {
        assert!(n >= 0);
        assert!(!module.is_empty());
        // Case does not matter to PHP function names.
        assert_eq!(
            packages::schema_version(&src, &module.to_ascii_uppercase()),
            schema
        );
    }
    for v in [
        packages::core_version_d7(&src),
        packages::core_version_d8(&src),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!v.is_empty() && v.trim() == v, "{v:?}");
    }
    let _ = packages::major_of(&module);
    if let Some(l) = packages::po_language(&module) {
        assert!(!l.is_empty() && l.len() <= 16 && !l.contains(['.', '/']));
    }
    let want = packages::wanted(&module);
    assert_eq!(want, packages::wanted(&module));
    if want != packages::Want::No {
        assert!(!module.split('/').any(|c| c == ".."), "{module}");
    }
    if packages::descend(&module) {
        assert!(!module.split('/').any(|c| c == ".."), "{module}");
    }
}

/// A platform's files, `path\0contents\0path\0contents…`. The scan gives core first, then
/// one package per (type, name) in order; the order the files come in does not matter.
pub fn scan(data: &[u8]) {
    let t = text(data);
    let parts: Vec<&str> = t.split('\0').collect();
    let files: Vec<(String, String)> = parts
        .chunks(2)
        .map(|c| {
            (
                c[0].to_string(),
                c.get(1).copied().unwrap_or("").to_string(),
            )
        })
        .collect();
    let result = packages::scan(&files);
    let Ok(s) = &result else {
        return;
    };
    assert!(s.drupal_major >= 7);
    assert_eq!(packages::major_of(&s.core_version), Some(s.drupal_major));
    let core = &s.packages[0];
    assert_eq!(
        (core.package_type, core.name.as_str()),
        (PackageType::Core, "drupal")
    );
    assert_eq!(core.version.as_deref(), Some(s.core_version.as_str()));
    for w in s.packages[1..].windows(2) {
        assert!(
            (w[0].package_type, &w[0].name) < (w[1].package_type, &w[1].name),
            "sorted and unique: {:?} {:?}",
            w[0].name,
            w[1].name
        );
    }
    for p in &s.packages[1..] {
        assert_ne!(p.package_type, PackageType::Core);
        assert!(packages::descend(&p.path), "{}", p.path);
        if p.package_type == PackageType::Profile {
            assert_eq!(p.languages.first().map(String::as_str), Some("en"));
        } else {
            assert!(p.languages.is_empty() && p.old_short_name.is_none());
        }
    }
    // The same files in the other order (when no two name the same file) scan the same.
    let mut seen = std::collections::BTreeSet::new();
    let distinct = files.iter().all(|(p, _)| {
        let norm: Vec<&str> = p
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        seen.insert(norm.join("/"))
    });
    if distinct {
        let mut rev = files.clone();
        rev.reverse();
        assert_eq!(packages::scan(&rev), result);
    }
}

// ---------------------------------------------------------------------------------------
// zone.rs

/// A zone file (the first line is the zone's origin, the rest the file). What parses
/// renders to a file that parses back to the same zone, and renders the same again.
pub fn zone_parse(data: &[u8]) {
    let (origin, file) = first_line(data);
    let parsed = Zone::parse(&origin, &file);
    assert_eq!(parsed, Zone::parse(&origin, &file));
    let Ok(z) = parsed else {
        return;
    };
    assert_eq!(z.origin, origin.trim_end_matches('.').to_ascii_lowercase());
    assert!(!z.ns.is_empty());
    for r in &z.records {
        assert!(
            zone::in_zone(&r.name, &z.origin),
            "{} in {}",
            r.name,
            z.origin
        );
    }
    let text = z.render();
    let back = Zone::parse(&z.origin, &text)
        .unwrap_or_else(|e| panic!("berth's own file does not parse: {e}\n{text}"));
    assert_eq!(back, z, "{text}");
    assert_eq!(back.render(), text);
}

/// Reads fuzz bytes as values, like `arbitrary::Unstructured` (which libs/hosting cannot
/// depend on): past the end, everything is zero.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    fn below(&mut self, n: usize) -> usize {
        self.u8() as usize % n
    }
    fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
        from[self.below(from.len())]
    }
    /// A label of `[a-z0-9-]`, 1 to 63 long (may break the hyphen rule: then the host is
    /// refused and the caller falls back).
    fn label(&mut self) -> String {
        const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-";
        let max = if self.bool() { 63 } else { 8 };
        let len = 1 + self.below(max);
        (0..len)
            .map(|_| ALPHA[self.below(ALPHA.len())] as char)
            .collect()
    }
    /// A host name: new labels in front of one of `base`, or a new name.
    fn host(&mut self, base: &[String]) -> HostName {
        let mut labels: Vec<String> = (0..self.below(3)).map(|_| self.label()).collect();
        match base.get(self.below(base.len() + 2)) {
            Some(b) => labels.push(b.clone()),
            None => {
                labels.push(self.label());
                labels.push(self.pick(&["com", "net", "co.uk", "test"]).into());
            }
        }
        if labels.len() == 1 && self.bool() {
            labels.push("example".into());
        }
        HostName::parse(&labels.join("."))
            .unwrap_or_else(|_| HostName::parse("fallback.example.com").expect("a host"))
    }
    fn ip(&mut self) -> IpAddr {
        if self.bool() {
            IpAddr::V4(Ipv4Addr::from(self.u32()))
        } else {
            let hi = ((self.u32() as u128) << 96) | ((self.u8() as u128) << 64);
            IpAddr::V6(Ipv6Addr::from(hi | self.u32() as u128))
        }
    }
    fn date(&mut self) -> NaiveDate {
        let y = 1990 + self.below(300) as i32;
        NaiveDate::from_ymd_opt(y, 1 + self.below(12) as u32, 1 + self.below(28) as u32)
            .expect("a date")
    }
}

/// A zone berth builds: new, with arbitrary records, then sites added and removed, the
/// serial bumped. Upserts are idempotent and all-or-nothing, removals leave no address at
/// the uri, serials only go up, and every state renders to a file that parses back equal.
/// Records with arbitrary text render without panicking.
pub fn zone_model(data: &[u8]) {
    let mut b = Bytes(data);
    let mut pool: Vec<String> = Vec::new();
    let first = b.host(&pool);
    pool.push(first.to_string());
    let existing: Vec<String> = if b.bool() {
        vec![b.host(&pool).to_string()]
    } else {
        Vec::new()
    };
    let Ok(origin) = zone::zone_for(&first, &existing) else {
        return;
    };
    pool.push(origin.clone());
    let ns = b.host(&pool);
    let mut z = Zone::new(&origin, ns.as_str());
    z.soa.serial = b.u32();
    z.ttl = b.u32();

    for _ in 0..b.below(6) {
        let name = b.host(&pool);
        if !z.contains(name.as_str()) {
            continue;
        }
        let ttl = b.bool().then(|| b.u32());
        let (rtype, value) = match b.below(4) {
            0 | 1 => {
                let ip = b.ip();
                (zone_record_type(&ip), ip.to_string())
            }
            2 => (RecordType::Cname, b.host(&pool).to_string()),
            _ => {
                let t = b.pick(&["MX", "TXT", "SRV", "CAA", "NS"]);
                if t == "NS" && name.as_str() == z.origin {
                    continue;
                }
                let v = format!("{} {}.", b.u8(), b.host(&pool));
                (RecordType::Other(t.into()), v)
            }
        };
        z.records.push(Record {
            name: name.to_string(),
            ttl,
            rtype,
            value,
        });
    }
    round_trip(&z);

    for _ in 0..b.below(8) {
        let uri = b.host(&pool);
        let aliases: Vec<HostName> = (0..b.below(4)).map(|_| b.host(&pool)).collect();
        pool.push(uri.to_string());
        if b.bool() {
            let site = SiteRecords {
                uri: &uri,
                aliases: &aliases,
                ip: b.ip(),
            };
            let before = z.clone();
            match z.upsert_site(site) {
                Ok(_) => {
                    let again = z.clone();
                    assert_eq!(z.upsert_site(site), Ok(Vec::new()), "idempotent");
                    assert_eq!(z, again);
                    if z.contains(uri.as_str()) {
                        let addrs: Vec<&Record> = z
                            .records_at(uri.as_str())
                            .filter(|r| matches!(r.rtype, RecordType::A | RecordType::Aaaa))
                            .collect();
                        assert!(!addrs.is_empty(), "an address at {uri}");
                        assert!(
                            addrs.iter().all(|r| r.value == site.ip.to_string()
                                && r.rtype == zone_record_type(&site.ip)),
                            "only the site's address at {uri}"
                        );
                    }
                }
                Err(_) => assert_eq!(z, before, "a refused upsert changes nothing"),
            }
        } else {
            let changes = z.remove_site(&uri, &aliases);
            assert!(
                changes
                    .iter()
                    .all(|c| matches!(c, zone::Change::Removed(_))),
                "a removal only removes"
            );
            assert!(
                !z.records_at(uri.as_str())
                    .any(|r| matches!(r.rtype, RecordType::A | RecordType::Aaaa)),
                "no address left at {uri}"
            );
            assert_eq!(z.remove_site(&uri, &aliases), Vec::new(), "idempotent");
        }
        let before = z.soa.serial;
        let today = b.date();
        z.bump_serial(today);
        assert!(
            z.soa.serial > before || before == u32::MAX,
            "{before} → {}",
            z.soa.serial
        );
        round_trip(&z);
    }

    // Whatever the records hold, rendering does not panic.
    let junk = text(b.0);
    let mut odd = z.clone();
    odd.records.push(Record {
        name: junk.clone(),
        ttl: None,
        rtype: RecordType::Other(junk.clone()),
        value: junk,
    });
    let _ = odd.render();
}

fn zone_record_type(ip: &IpAddr) -> RecordType {
    match ip {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::Aaaa,
    }
}

fn round_trip(z: &Zone) {
    let text = z.render();
    match Zone::parse(&z.origin, &text) {
        Ok(back) => assert_eq!(&back, z, "{text}"),
        Err(e) => panic!("berth's own zone does not parse back: {e}\n{text}"),
    }
}

// ---------------------------------------------------------------------------------------
// tasks.rs

/// Task arguments (the input as JSON) for every task type, target kind and diagnostics
/// setting: validation is deterministic, and what it returns validates to itself.
pub fn tasks(data: &[u8]) {
    let t = text(data);
    if let Ok(ty) = TaskType::parse(&t) {
        assert_eq!(ty.as_str(), t);
    }
    for ty in TaskType::ALL {
        assert_eq!(TaskType::parse(ty.as_str()), Ok(ty));
    }
    let Ok(args) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Some(s) = args.as_str() {
        let _ = TaskType::parse(s);
    }
    // The typed arguments survive a trip through JSON.
    fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(args: &Value) {
        if let Ok(a) = serde_json::from_value::<T>(args.clone()) {
            let v = serde_json::to_value(&a).expect("serialisable");
            let b: T = serde_json::from_value(v.clone()).expect("reads back");
            assert_eq!(serde_json::to_value(&b).expect("serialisable"), v);
        }
    }
    typed::<MigrateArgs>(&args);
    typed::<CloneArgs>(&args);
    typed::<BackupArgs>(&args);
    typed::<NoopArgs>(&args);
    for ty in TaskType::ALL {
        for kind in [TargetKind::Server, TargetKind::Platform, TargetKind::Site] {
            for diagnostics in [false, true] {
                let out = tasks::validate(ty, kind, &args, diagnostics);
                assert_eq!(out, tasks::validate(ty, kind, &args, diagnostics));
                if let Ok(norm) = &out {
                    assert_eq!(
                        tasks::validate(ty, kind, norm, diagnostics).as_ref(),
                        Ok(norm),
                        "{} normalised {args} to {norm}",
                        ty.as_str()
                    );
                    // Diagnostics only ever allow more, and change nothing else.
                    if diagnostics && tasks::validate(ty, kind, &args, false).is_ok() {
                        assert_eq!(tasks::validate(ty, kind, &args, false), out);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// compare.rs

fn pkg(version: &str) -> Package {
    Package {
        name: "x".into(),
        package_type: PackageType::Module,
        title: None,
        version: Some(version.into()),
        schema_version: None,
        path: String::new(),
        languages: Vec::new(),
        old_short_name: None,
        enabled: None,
    }
}

/// Three versions (the input's first three lines): parsing ignores case and surrounding
/// space, the order is a total order (antisymmetric, transitive), and a comparison's
/// verdict without schemas follows it.
pub fn versions(data: &[u8]) {
    let t = text(data);
    let mut lines = t.splitn(3, '\n');
    let raw: Vec<&str> = (0..3).map(|_| lines.next().unwrap_or("")).collect();
    let v: Vec<Version> = raw.iter().map(|s| Version::parse(s)).collect();
    for (s, p) in raw.iter().zip(&v) {
        assert_eq!(p.cmp(p), Ordering::Equal);
        assert_eq!(&Version::parse(&s.to_ascii_uppercase()), p, "{s:?}");
        assert_eq!(&Version::parse(&format!(" {s}\t")), p, "{s:?}");
    }
    for a in &v {
        for b in &v {
            assert_eq!(a.cmp(b), b.cmp(a).reverse(), "antisymmetric");
            assert_eq!(a == b, a.cmp(b) == Ordering::Equal);
            for c in &v {
                if a <= b && b <= c {
                    assert!(a <= c, "transitive");
                }
            }
        }
    }
    let cmp = compare::compare(&[pkg(raw[0])], &[pkg(raw[1])], None);
    let want = match v[1].cmp(&v[0]) {
        Ordering::Greater => Verdict::Upgrade,
        Ordering::Less => Verdict::Warning,
        Ordering::Equal => Verdict::Same,
    };
    assert_eq!(cmp.rows.len(), 1);
    assert_eq!(cmp.rows[0].verdict, want);
    assert_eq!(cmp.errors, 0);
    let profile = compare::compare(&[], &[], Some(raw[2]));
    assert_eq!(profile.errors, 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tricky_site_names_keep_the_fuzzed_properties() {
        let long = format!("{}.example", vec!["a".repeat(63); 3].join("."));
        let lines = [
            "WWW.Example.COM.",
            "bücher.example",
            "xn--bcher-kva.example",
            "xn--zz.example",
            "1.2.3.4",
            "0x7f.1",
            "0xzz.example",
            "[::1]",
            "localhost",
            "a.b.",
            "a..b",
            "例え.テスト",
            "ＥＸＡＭＰＬＥ．ｃｏｍ",
            long.as_str(),
        ];
        names(lines.join("\n").as_bytes());
    }
}
