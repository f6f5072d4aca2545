//! The `site-records` and `site-records-remove` actions against a real named: each test
//! has its own directory and named instance on free loopback ports.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_broker::worker::{StepError, WorkerConfig};
use berth_contracts::steps::ZoneChange;
use berth_dns::DnsConfig;
use berth_dns::records::{SiteNames, site_records, site_records_remove, zone_file};
use berth_test_servers::named::Named;
use berth_zone::{Record, RecordType, Zone};
use serde_json::{Value, json};

const SERVER: &str = "server_master";

/// A test's directory, removed when the test passes.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("berth-dns-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir.canonicalize().unwrap())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

struct Env {
    named: Named,
    cfg: DnsConfig,
    /// When the test began: a serial written since is dated this day or a later one (the
    /// test may run across midnight).
    since: chrono::DateTime<chrono::Utc>,
    // Last: dropped after named has stopped.
    _dir: TempDir,
}

fn env(name: &str) -> Env {
    let dir = TempDir::new(name);
    let named = Named::start(&dir.0, &[SERVER.to_string()]).expect("named starts");
    let cfg = DnsConfig {
        worker: WorkerConfig::new("amqp://127.0.0.1:1", "dns", vec![SERVER.into()]),
        data_root: dir.0.clone(),
        checkconf_bin: "named-checkconf".into(),
        named_conf: named.named_conf.clone(),
        checkzone_bin: "named-checkzone".into(),
        rndc_bin: "rndc".into(),
        rndc_conf: Some(named.rndc_conf.clone()),
    };
    Env {
        named,
        cfg,
        since: chrono::Utc::now(),
        _dir: dir,
    }
}

/// A site's names, written as JSON for short (`uri`, `aliases`, `ip`, `web_host`, `ns`).
fn names(args: &Value) -> SiteNames {
    serde_json::from_value(args.clone()).unwrap_or_else(|e| panic!("{args}: {e}"))
}

/// Runs an action, returning its result and its log lines.
async fn add(env: &Env, args: Value) -> (Result<Vec<ZoneChange>, StepError>, Vec<String>) {
    let lines = Mutex::new(Vec::new());
    let log = |l: String| lines.lock().unwrap().push(l);
    let res = site_records(&env.cfg, SERVER, &names(&args), &log).await;
    (res, lines.into_inner().unwrap())
}

async fn remove(env: &Env, args: Value) -> (Result<Vec<ZoneChange>, StepError>, Vec<String>) {
    let lines = Mutex::new(Vec::new());
    let log = |l: String| lines.lock().unwrap().push(l);
    let res = site_records_remove(&env.cfg, SERVER, &names(&args), &log).await;
    (res, lines.into_inner().unwrap())
}

/// The zones a step removed: those reported without a serial.
fn removed_zones(output: &[ZoneChange]) -> Vec<&str> {
    output
        .iter()
        .filter(|z| z.serial.is_none())
        .map(|z| z.zone.as_str())
        .collect()
}

fn www() -> Value {
    json!({"uri": "www.example.com", "aliases": ["example.com", "shop.example.com"], "ip": "127.0.0.1"})
}

fn www_names() -> Value {
    json!({"uri": "www.example.com", "aliases": ["example.com", "shop.example.com"]})
}

fn blog() -> Value {
    json!({"uri": "blog.example.com", "aliases": ["news.example.com"], "ip": "127.0.0.2"})
}

/// Asks named until it answers `want` (zone loads after rndc are asynchronous).
fn dig_until(named: &Named, name: &str, rtype: &str, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = named.dig(name, rtype).unwrap();
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "dig {name} {rtype}: {got:?}, expected {want:?}\n{}",
                std::fs::read_to_string(&named.log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The serial named serves for `zone`.
fn served_serial(named: &Named, zone: &str) -> u32 {
    let soa = named.dig(zone, "SOA").unwrap();
    let line = soa.first().unwrap_or_else(|| panic!("no SOA for {zone}"));
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn serial_until(named: &Named, zone: &str, want: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while served_serial(named, zone) != want {
        assert!(
            Instant::now() < deadline,
            "serial of {zone} never became {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn serial_of(output: &[ZoneChange], zone: &str) -> u32 {
    output
        .iter()
        .find(|z| z.zone == zone)
        .unwrap_or_else(|| panic!("no zone {zone} in {output:?}"))
        .serial
        .unwrap_or_else(|| panic!("zone {zone} removed: {output:?}"))
}

/// The serial is YYYYMMDDnn, dated the day (UTC) it was written: between the test's start
/// and now, both days included.
fn assert_today(env: &Env, serial: u32) {
    let s = serial.to_string();
    assert_eq!(s.len(), 10, "{s}");
    let dated = chrono::NaiveDate::parse_from_str(&s[..8], "%Y%m%d")
        .unwrap_or_else(|e| panic!("serial {s} does not start with a date: {e}"));
    let (first, last) = (env.since.date_naive(), chrono::Utc::now().date_naive());
    assert!(
        first <= dated && dated <= last,
        "serial {s} is not dated between {first} and {last}"
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn a_site_gets_its_a_record_and_a_cname_per_alias() {
    let env = env("add");
    let (res, log) = add(&env, www()).await;
    let out = res.unwrap();
    let serial = serial_of(&out, "example.com");
    assert_today(&env, serial);
    assert!(
        serial.is_multiple_of(100),
        "a new zone starts at nn = 00: {serial}"
    );
    assert_eq!(
        log[0],
        format!(
            "zone example.com (new zone): A www.example.com → 127.0.0.1, A example.com → 127.0.0.1, \
             CNAME shop.example.com → www.example.com; serial {serial}"
        )
    );
    assert!(
        log.contains(&"zone example.com: named-checkzone ok".to_string()),
        "{log:?}"
    );
    assert_eq!(log.last().unwrap(), "rndc reconfig", "{log:?}");

    dig_until(&env.named, "www.example.com", "A", &["127.0.0.1"]);
    dig_until(
        &env.named,
        "shop.example.com",
        "CNAME",
        &["www.example.com."],
    );
    // The apex alias gets an address record, not a CNAME.
    dig_until(&env.named, "example.com", "A", &["127.0.0.1"]);
    assert_eq!(served_serial(&env.named, "example.com"), serial);
    let conf = read(
        &env.cfg
            .data_root
            .join("config/server_master/bind/zones.conf"),
    );
    assert!(
        conf.contains("zone \"example.com\" { type master; file \""),
        "{conf}"
    );
}

#[tokio::test]
async fn a_second_site_shares_the_zone_and_removal_takes_only_its_records() {
    let env = env("two");
    let s1 = serial_of(&add(&env, www()).await.0.unwrap(), "example.com");
    let (res, log) = add(&env, blog()).await;
    let s2 = serial_of(&res.unwrap(), "example.com");
    assert_today(&env, s2);
    assert!(s2 > s1, "{s2} > {s1}");
    assert_eq!(log.last().unwrap(), "rndc reload example.com", "{log:?}");
    serial_until(&env.named, "example.com", s2);
    dig_until(&env.named, "blog.example.com", "A", &["127.0.0.2"]);
    dig_until(
        &env.named,
        "news.example.com",
        "CNAME",
        &["blog.example.com."],
    );
    dig_until(&env.named, "www.example.com", "A", &["127.0.0.1"]);

    let (res, log) = remove(&env, www_names()).await;
    let s3 = serial_of(&res.unwrap(), "example.com");
    assert!(s3 > s2, "{s3} > {s2}");
    assert_eq!(
        log[0],
        format!(
            "zone example.com: removed A www.example.com → 127.0.0.1, removed A example.com → 127.0.0.1, \
             removed CNAME shop.example.com → www.example.com; serial {s3}"
        )
    );
    serial_until(&env.named, "example.com", s3);
    dig_until(&env.named, "www.example.com", "A", &[]);
    dig_until(&env.named, "shop.example.com", "CNAME", &[]);
    dig_until(&env.named, "example.com", "A", &[]);
    dig_until(&env.named, "blog.example.com", "A", &["127.0.0.2"]);
    dig_until(
        &env.named,
        "news.example.com",
        "CNAME",
        &["blog.example.com."],
    );

    // Gone already: nothing to remove, nothing changes.
    let (res, log) = remove(&env, www_names()).await;
    assert_eq!(serial_of(&res.unwrap(), "example.com"), s3);
    assert_eq!(log, vec!["zone example.com: nothing to remove".to_string()]);
    // A zone that was never made.
    let (res, log) = remove(&env, json!({"uri": "www.nowhere.org"})).await;
    res.unwrap();
    assert_eq!(
        log,
        vec!["zone nowhere.org: no such zone; nothing to remove".to_string()]
    );
}

#[tokio::test]
async fn a_redelivered_add_changes_nothing_and_keeps_the_serial() {
    let env = env("again");
    let s1 = serial_of(&add(&env, www()).await.0.unwrap(), "example.com");
    let file = zone_file(&env.cfg, SERVER, "example.com");
    let before = read(&file);
    let (res, log) = add(&env, www()).await;
    assert_eq!(serial_of(&res.unwrap(), "example.com"), s1);
    assert_eq!(read(&file), before);
    assert_eq!(
        log,
        vec![
            format!("zone example.com: records already present; serial {s1} unchanged"),
            "rndc reload example.com".to_string(),
        ]
    );
    dig_until(&env.named, "www.example.com", "A", &["127.0.0.1"]);
    assert_eq!(served_serial(&env.named, "example.com"), s1);
}

#[tokio::test]
async fn a_zone_file_refused_by_named_checkzone_leaves_the_previous_zone_serving() {
    let env = env("refused");
    let s1 = serial_of(&add(&env, www()).await.0.unwrap(), "example.com");
    dig_until(&env.named, "www.example.com", "A", &["127.0.0.1"]);

    // An operator's TXT record at a name a new site wants as an alias: a CNAME can't
    // share its name with other data, which only named-checkzone catches.
    let file = zone_file(&env.cfg, SERVER, "example.com");
    let mut zone = Zone::parse("example.com", &read(&file)).unwrap();
    zone.records.push(Record::new(
        "promo.example.com",
        RecordType::Other("TXT".into()),
        "\"hello\"",
    ));
    std::fs::write(&file, zone.render()).unwrap();
    let edited = read(&file);

    let args =
        json!({"uri": "blog.example.com", "aliases": ["promo.example.com"], "ip": "127.0.0.2"});
    let (res, log) = add(&env, args).await;
    let err = res.unwrap_err();
    assert!(matches!(err, StepError::Permanent(_)), "{err:?}");
    assert!(err.message().contains("named-checkzone"), "{err}");
    assert!(err.message().contains("CNAME and other data"), "{err}");
    assert!(
        log.contains(&"zone example.com: previous zone file restored".to_string()),
        "{log:?}"
    );
    assert_eq!(read(&file), edited, "the previous file is back");
    assert!(!log.iter().any(|l| l.starts_with("rndc")), "{log:?}");
    // named still serves the zone it had.
    assert_eq!(served_serial(&env.named, "example.com"), s1);
    dig_until(&env.named, "www.example.com", "A", &["127.0.0.1"]);
    dig_until(&env.named, "blog.example.com", "A", &[]);
    dig_until(&env.named, "promo.example.com", "CNAME", &[]);
}

#[tokio::test]
async fn a_new_zone_refused_by_named_checkzone_is_removed() {
    let env = env("refused-new");
    // The name server inside the new zone without an address: named-checkzone refuses.
    let args = json!({"uri": "www.example.net", "ip": "127.0.0.1", "ns": "ns1.example.net"});
    let (res, _log) = add(&env, args).await;
    let err = res.unwrap_err();
    assert!(matches!(err, StepError::Permanent(_)), "{err:?}");
    assert!(err.message().contains("named-checkzone"), "{err}");
    assert!(!zone_file(&env.cfg, SERVER, "example.net").exists());
    let conf = read(
        &env.cfg
            .data_root
            .join("config/server_master/bind/zones.conf"),
    );
    assert!(!conf.contains("example.net"), "{conf}");
}

#[tokio::test]
async fn bad_arguments_fail_permanently_and_change_nothing() {
    let env = env("bad-args");
    let s1 = serial_of(&add(&env, www()).await.0.unwrap(), "example.com");
    let file = zone_file(&env.cfg, SERVER, "example.com");
    let before = read(&file);
    for args in [
        json!({"uri": "blog.example.com", "ip": "300.1.2.3"}),
        json!({"uri": "blog.example.com"}),
        json!({"uri": "Blog.example.com", "ip": "127.0.0.2"}),
        json!({"uri": "blog.example.com", "aliases": ["../x"], "ip": "127.0.0.2"}),
        json!({"uri": "localhost", "ip": "127.0.0.2"}),
        // shop is www's alias.
        json!({"uri": "shop.example.com", "ip": "127.0.0.2"}),
    ] {
        let (res, _) = add(&env, args.clone()).await;
        let err = res.expect_err(&args.to_string());
        assert!(matches!(err, StepError::Permanent(_)), "{args}: {err:?}");
    }
    assert_eq!(read(&file), before);
    assert_eq!(served_serial(&env.named, "example.com"), s1);
}

#[tokio::test]
async fn the_address_comes_from_web_host_and_aliases_may_live_in_other_zones() {
    let env = env("web-host");
    let args =
        json!({"uri": "www.example.com", "aliases": ["www.example.org"], "web_host": "localhost"});
    let (res, log) = add(&env, args).await;
    let out = res.unwrap();
    assert!(
        log.contains(&"web host localhost resolves to 127.0.0.1".to_string()),
        "{log:?}"
    );
    assert_today(&env, serial_of(&out, "example.org"));
    dig_until(&env.named, "www.example.com", "A", &["127.0.0.1"]);
    dig_until(
        &env.named,
        "www.example.org",
        "CNAME",
        &["www.example.com."],
    );

    let (res, _) = remove(
        &env,
        json!({"uri": "www.example.com", "aliases": ["www.example.org"]}),
    )
    .await;
    res.unwrap();
    dig_until(&env.named, "www.example.com", "A", &[]);
    dig_until(&env.named, "www.example.org", "CNAME", &[]);
}

#[tokio::test]
async fn a_change_to_a_known_zone_and_a_new_zone_in_one_step_are_both_served() {
    let env = env("mixed");
    let s1 = serial_of(&add(&env, www()).await.0.unwrap(), "example.com");
    let args =
        json!({"uri": "blog.example.com", "aliases": ["blog.example.org"], "ip": "127.0.0.2"});
    let (res, log) = add(&env, args).await;
    let out = res.unwrap();
    let s2 = serial_of(&out, "example.com");
    assert!(s2 > s1);
    assert_today(&env, serial_of(&out, "example.org"));
    assert_eq!(
        log[log.len() - 2..],
        [
            "rndc reconfig".to_string(),
            "rndc reload example.com".to_string()
        ],
        "{log:?}"
    );
    serial_until(&env.named, "example.com", s2);
    dig_until(&env.named, "blog.example.com", "A", &["127.0.0.2"]);
    dig_until(
        &env.named,
        "blog.example.org",
        "CNAME",
        &["blog.example.com."],
    );
    dig_until(&env.named, "www.example.com", "A", &["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_steps_on_one_server_all_land() {
    let env = env("concurrent");
    let site = |n: u8| json!({"uri": format!("s{n}.example.com"), "aliases": [format!("a{n}.example.com")], "ip": format!("127.0.0.{n}")});
    let (r1, r2, r3, r4) = tokio::join!(
        add(&env, site(1)),
        add(&env, site(2)),
        add(&env, site(3)),
        add(&env, site(4))
    );
    let mut serials: Vec<u32> = [r1, r2, r3, r4]
        .into_iter()
        .map(|(r, _)| serial_of(&r.unwrap(), "example.com"))
        .collect();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 4, "one serial per change: {serials:?}");
    serial_until(&env.named, "example.com", serials[3]);
    for n in 1..=4u8 {
        dig_until(
            &env.named,
            &format!("s{n}.example.com"),
            "A",
            &[&format!("127.0.0.{n}")],
        );
        dig_until(
            &env.named,
            &format!("a{n}.example.com"),
            "CNAME",
            &[&format!("s{n}.example.com.")],
        );
    }
}

/// Whether named serves `zone` (an SOA answer).
fn serves_zone(named: &Named, zone: &str) -> bool {
    !named.dig(zone, "SOA").unwrap().is_empty()
}

fn zone_gone_until(env: &Env, zone: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while serves_zone(&env.named, zone) {
        assert!(
            Instant::now() < deadline,
            "named still serves {zone}\n{}",
            std::fs::read_to_string(&env.named.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !zone_file(&env.cfg, SERVER, zone).exists(),
        "zone file of {zone} left"
    );
    let conf = read(
        &env.cfg
            .data_root
            .join("config/server_master/bind/zones.conf"),
    );
    assert!(!conf.contains(&format!("\"{zone}\"")), "{conf}");
}

/// Issue 10: a PATCH that drops aliases queues a verify, whose `site-records` has only the
/// aliases left: the dropped ones (a CNAME, the apex's address, and the only name of
/// another zone berth made) stop resolving, and the zone left empty is removed.
#[tokio::test]
async fn dropped_aliases_stop_resolving_and_a_zone_left_empty_goes() {
    let env = env("dropped");
    let all = json!({"uri": "www.example.com",
        "aliases": ["example.com", "shop.example.com", "keep.example.com", "www.other.org"],
        "ip": "127.0.0.1"});
    add(&env, all).await.0.unwrap();
    dig_until(
        &env.named,
        "shop.example.com",
        "CNAME",
        &["www.example.com."],
    );
    dig_until(&env.named, "www.other.org", "CNAME", &["www.example.com."]);
    assert!(serves_zone(&env.named, "other.org"));

    let kept = json!({"uri": "www.example.com", "aliases": ["keep.example.com"],
        "ip": "127.0.0.1"});
    let (res, log) = add(&env, kept.clone()).await;
    let out = res.unwrap();
    assert_eq!(removed_zones(&out), ["other.org"], "{out:?}");
    assert!(
        log.contains(
            &"zone other.org: no record left in this zone berth made; zone removed".into()
        ),
        "{log:?}"
    );
    dig_until(&env.named, "shop.example.com", "CNAME", &[]);
    dig_until(&env.named, "example.com", "A", &[]);
    dig_until(&env.named, "www.other.org", "CNAME", &[]);
    dig_until(
        &env.named,
        "keep.example.com",
        "CNAME",
        &["www.example.com."],
    );
    dig_until(&env.named, "www.example.com", "A", &["127.0.0.1"]);
    zone_gone_until(&env, "other.org");

    // Run again (a redelivery): nothing more changes.
    let (res, _) = add(&env, kept).await;
    assert_eq!(removed_zones(&res.unwrap()), Vec::<&str>::new());
}

/// Issue 10: a deleted site's records go and the zone berth made for it, left empty, is
/// removed; a zone another site still uses stays.
#[tokio::test]
async fn a_removed_site_takes_its_empty_zone_with_it_but_not_a_shared_one() {
    let env = env("emptied");
    add(&env, www()).await.0.unwrap();
    add(&env, blog()).await.0.unwrap();
    let own = json!({"uri": "www.alone.net", "aliases": ["alone.net"], "ip": "127.0.0.3"});
    add(&env, own).await.0.unwrap();
    dig_until(&env.named, "www.alone.net", "A", &["127.0.0.3"]);

    let (res, _) = remove(
        &env,
        json!({"uri": "www.alone.net", "aliases": ["alone.net"]}),
    )
    .await;
    assert_eq!(removed_zones(&res.unwrap()), ["alone.net"]);
    zone_gone_until(&env, "alone.net");
    dig_until(&env.named, "www.alone.net", "A", &[]);

    // example.com still has blog's records: it stays, without www's.
    let (res, _) = remove(&env, www_names()).await;
    assert_eq!(removed_zones(&res.unwrap()), Vec::<&str>::new());
    dig_until(&env.named, "www.example.com", "A", &[]);
    assert!(serves_zone(&env.named, "example.com"));
    // The last site of the zone goes: so does the zone.
    let (res, _) = remove(
        &env,
        json!({"uri": "blog.example.com", "aliases": ["news.example.com"]}),
    )
    .await;
    assert_eq!(removed_zones(&res.unwrap()), ["example.com"]);
    zone_gone_until(&env, "example.com");
}

/// Taking back the removal of a site's last records (a migrate or delete that fails at a
/// later step) puts back the file named loaded, without a new `named-checkzone`: a checker
/// that refuses everything cannot leave the site without its records. A different site
/// wanting that zone gets a new, checked file, not the old one.
#[tokio::test]
async fn a_removed_zone_comes_back_as_it_was_when_its_removal_is_taken_back() {
    let mut env = env("putback");
    let own = json!({"uri": "www.alone.net", "aliases": ["alone.net"], "ip": "127.0.0.3"});
    let names = json!({"uri": "www.alone.net", "aliases": ["alone.net"]});
    add(&env, own.clone()).await.0.unwrap();
    dig_until(&env.named, "www.alone.net", "A", &["127.0.0.3"]);
    let (res, _) = remove(&env, names).await;
    assert_eq!(removed_zones(&res.unwrap()), ["alone.net"]);
    zone_gone_until(&env, "alone.net");

    env.cfg.checkzone_bin = "false".into();
    // Another site in that zone: the old file is not its own, and the checker refuses.
    let stranger = json!({"uri": "shop.alone.net", "aliases": [], "ip": "127.0.0.4"});
    let err = add(&env, stranger).await.0.unwrap_err();
    assert!(err.message().contains("named-checkzone refused"), "{err:?}");
    assert!(!serves_zone(&env.named, "alone.net"));
    // The same site, as it was: the zone comes back as named last loaded it.
    let (res, log) = add(&env, own).await;
    res.unwrap_or_else(|e| panic!("{e:?}\n{log:?}"));
    dig_until(&env.named, "www.alone.net", "A", &["127.0.0.3"]);
    dig_until(&env.named, "alone.net", "A", &["127.0.0.3"]);
    assert!(
        log.iter()
            .any(|l| l.contains("put back as named last loaded it")),
        "{log:?}"
    );
}
