//! A site's DNS records on a server's BIND: the work of the `site-records` and
//! `site-records-remove` actions, as plain async functions taking the configuration, the
//! server, the site's names ([`SiteNames`]) and a log sink, so they run without the broker.
//!
//! Layout, under `<data_root>/config/<server>/bind/`:
//! - `zones/<zone>.zone`: one file per zone, written whole (temp file and rename);
//! - `zones.conf`: `zone "<zone>" { type master; file "<abs path>"; };` for every zone
//!   file, included by the server's named.conf;
//! - `zones.made`: the zones this worker created, one a line: those it removes once no
//!   record is left in them (a zone an operator made is kept, even empty);
//! - `zones/<zone>.zone.removed`: the last file of a zone removed so, kept so that taking
//!   the removal back (a migrate or delete that fails later) puts back the very file named
//!   loaded, without a new `named-checkzone` that a broken checker would refuse;
//! - `sites/<uri>`: the names this worker last wrote a site's records for, one a line: a
//!   name the site no longer has (an alias removed by a PATCH, then its verify) loses its
//!   records.
//!
//! Every changed zone file is checked with `named-checkzone` before BIND is told about it;
//! a refused file is put back as it was (or removed, for a new zone) and the step fails
//! permanently with the checker's output, so BIND keeps serving the previous zone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use berth_broker::worker::StepError;
use berth_contracts::steps::{SiteSpec, ZoneChange};
use berth_hosting::{HostName, ServerName};
use berth_zone::{Change, SiteRecords, Zone, ZoneError, zone_for};
use serde::Deserialize;

use crate::DnsConfig;

/// Where a step's log lines go (the task log, through `StepContext::info`, in the worker).
pub type Log<'a> = &'a (dyn Fn(String) + Send + Sync);

/// The name server of the zones berth creates when the step names none (`ns`).
pub const DEFAULT_NS: &str = "localhost";

/// One lock per server: zone edits of a server are serialised within the process.
static SERVER_LOCKS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Default::default);

fn server_lock(server: &str) -> Arc<tokio::sync::Mutex<()>> {
    let mut locks = SERVER_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    Arc::clone(locks.entry(server.to_owned()).or_default())
}

/// `<data_root>/config/<server>/bind`.
pub fn bind_dir(cfg: &DnsConfig, server: &str) -> PathBuf {
    cfg.data_root.join("config").join(server).join("bind")
}

/// `<data_root>/config/<server>/bind/zones/<zone>.zone`.
pub fn zone_file(cfg: &DnsConfig, server: &str, zone: &str) -> PathBuf {
    bind_dir(cfg, server)
        .join("zones")
        .join(format!("{zone}.zone"))
}

/// What both actions are asked: a site's names and where its address comes from. Built
/// from the step's [`SiteSpec`] ([`SiteNames::of_site`]); every name is checked again
/// here (they reach zone files).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SiteNames {
    pub uri: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The site's address as given (tests); else `web_host` is resolved.
    #[serde(default)]
    pub ip: Option<String>,
    /// The web server's host name: the site's address is its address.
    #[serde(default)]
    pub web_host: Option<String>,
    /// The name server of a zone this creates; [`DEFAULT_NS`] when `None`.
    #[serde(default)]
    pub ns: Option<String>,
}

impl SiteNames {
    /// A site step's names; its address is the web host's.
    pub fn of_site(site: &SiteSpec) -> Self {
        Self {
            uri: site.uri.clone(),
            aliases: site.aliases.clone(),
            ip: None,
            web_host: Some(site.web_host.clone()),
            ns: None,
        }
    }
}

/// The names of both actions, checked.
#[derive(Debug, Clone)]
struct SiteArgs {
    uri: HostName,
    /// Without the uri, without repeats.
    aliases: Vec<HostName>,
}

fn site_args(names: &SiteNames) -> Result<SiteArgs, StepError> {
    let uri = HostName::parse(&names.uri).map_err(|e| StepError::permanent(format!("uri: {e}")))?;
    let mut aliases: Vec<HostName> = Vec::new();
    for a in &names.aliases {
        let a = HostName::parse(a).map_err(|e| StepError::permanent(format!("alias: {e}")))?;
        if a != uri && !aliases.contains(&a) {
            aliases.push(a);
        }
    }
    Ok(SiteArgs { uri, aliases })
}

/// The site's address: `ip`, else `web_host` resolved (IPv4 preferred).
async fn site_ip(names: &SiteNames, log: Log<'_>) -> Result<IpAddr, StepError> {
    if let Some(text) = &names.ip {
        return text
            .parse()
            .map_err(|_| StepError::permanent(format!("`{text}` is not an IP address")));
    }
    let host = names
        .web_host
        .as_deref()
        .ok_or_else(|| StepError::permanent("the step needs an `ip` or a `web_host`"))?;
    let host = HostName::parse(host).map_err(|e| StepError::permanent(format!("web_host: {e}")))?;
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), 0))
        .await
        .map_err(|e| StepError::transient(format!("cannot resolve {host}: {e}")))?
        .map(|a| a.ip())
        .collect();
    let ip = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| StepError::transient(format!("{host} resolves to no address")))?;
    log(format!("web host {host} resolves to {ip}"));
    Ok(ip)
}

fn check_server(server: &str) -> Result<(), StepError> {
    ServerName::parse(server)
        .map(|_| ())
        .map_err(|e| StepError::permanent(format!("server: {e}")))
}

/// The zones that have a file in `zones/`.
async fn existing_zones(dir: &Path) -> Result<Vec<String>, StepError> {
    let mut out = Vec::new();
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => {
            return Err(StepError::permanent(format!(
                "cannot read {}: {e}",
                dir.display()
            )));
        }
    };
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| StepError::permanent(format!("cannot read {}: {e}", dir.display())))?
    {
        let name = entry.file_name();
        let Some(zone) = name.to_str().and_then(|n| n.strip_suffix(".zone")) else {
            continue;
        };
        if HostName::parse(zone).is_ok() {
            out.push(zone.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// The zones the site's names belong to (the uri's first, then in order). A single-label
/// name has no zone: an error, or skipped with `skip_unzoned` (for removals).
fn zones_of(
    site: &SiteArgs,
    existing: &[String],
    skip_unzoned: bool,
) -> Result<Vec<String>, StepError> {
    let mut known = existing.to_vec();
    let mut zones = Vec::new();
    for name in std::iter::once(&site.uri).chain(&site.aliases) {
        let zone = match zone_for(name, &known) {
            Ok(z) => z,
            Err(_) if skip_unzoned => continue,
            Err(e) => return Err(StepError::permanent(e.to_string())),
        };
        if !known.contains(&zone) {
            known.push(zone.clone());
        }
        if !zones.contains(&zone) {
            zones.push(zone);
        }
    }
    Ok(zones)
}

async fn read_optional(path: &Path) -> Result<Option<String>, StepError> {
    match tokio::fs::read_to_string(path).await {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StepError::permanent(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Writes `path` whole: a temp file beside it, then a rename.
async fn write_atomic(path: &Path, text: &str) -> Result<(), StepError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    tokio::fs::write(&tmp, text)
        .await
        .map_err(|e| StepError::permanent(format!("cannot write {}: {e}", tmp.display())))?;
    tokio::fs::rename(&tmp, path).await.map_err(|e| {
        StepError::permanent(format!(
            "cannot rename {} to {}: {e}",
            tmp.display(),
            path.display()
        ))
    })
}

/// `rndc [-c <rndc_conf>] <args>`; a failure is transient (named may be restarting; the
/// zone files are put back, and the retry writes them again).
async fn rndc(cfg: &DnsConfig, args: &[&str], log: Log<'_>) -> Result<(), StepError> {
    let mut full = Vec::new();
    if let Some(conf) = &cfg.rndc_conf {
        full.push("-c".to_string());
        full.push(conf.to_string_lossy().into_owned());
    }
    full.extend(args.iter().map(|a| a.to_string()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    berth_command::run_command(&cfg.rndc_bin, &full, true).await?;
    log(format!("rndc {}", args.join(" ")));
    Ok(())
}

/// A zone file about to replace another (or none).
struct Pending {
    zone: String,
    path: PathBuf,
    old: Option<String>,
}

/// Writes the zone files, checks each with `named-checkzone`; on a refusal puts every
/// file back as it was and fails permanently with the checker's output.
async fn write_checked(
    cfg: &DnsConfig,
    edits: Vec<(Pending, String)>,
    log: Log<'_>,
) -> Result<Vec<Pending>, StepError> {
    let mut written: Vec<Pending> = Vec::new();
    let mut failure = None;
    for (p, text) in edits {
        if let Err(e) = write_atomic(&p.path, &text).await {
            failure = Some(e);
            break;
        }
        let path = p.path.to_string_lossy().into_owned();
        let check = berth_command::run_command(&cfg.checkzone_bin, &[&p.zone, &path], false).await;
        let zone = p.zone.clone();
        written.push(p);
        match check {
            Ok(_) => log(format!("zone {zone}: named-checkzone ok")),
            Err(e) => {
                log(format!("zone {zone}: named-checkzone refused it: {e}"));
                failure = Some(StepError::permanent(format!(
                    "zone {zone}: named-checkzone refused the new zone file, which was put back as it was: {e}"
                )));
                break;
            }
        }
    }
    let Some(err) = failure else {
        return Ok(written);
    };
    put_back(&written, log).await;
    Err(err)
}

/// Puts zone files back as they were before this step wrote them (or removes new ones).
async fn put_back(written: &[Pending], log: Log<'_>) {
    for p in written.iter().rev() {
        let restored = match &p.old {
            Some(old) => write_atomic(&p.path, old).await,
            None => tokio::fs::remove_file(&p.path).await.map_err(|e| {
                StepError::permanent(format!("cannot remove {}: {e}", p.path.display()))
            }),
        };
        match restored {
            Ok(()) => log(format!("zone {}: previous zone file restored", p.zone)),
            Err(e) => log(format!(
                "zone {}: cannot restore the previous file: {e}",
                p.zone
            )),
        }
    }
}

/// Rewrites zones.conf and tells named. When that fails, the zone files go back as they
/// were (and zones.conf with them) before the error is returned: a step that fails for good
/// is not taken back, so it must not leave records named was never told of (they would be
/// served at named's next reload). A retry writes them again.
async fn publish(
    cfg: &DnsConfig,
    server: &str,
    written: &[Pending],
    reload: &[String],
    log: Log<'_>,
) -> Result<(), StepError> {
    let told = async {
        let conf_changed = write_zones_conf(cfg, server, log).await?;
        tell_named(cfg, conf_changed, reload, log).await
    }
    .await;
    if let Err(e) = told {
        log(format!(
            "named was not told of the change ({}): zone files put back",
            e.message()
        ));
        put_back(written, log).await;
        if let Err(e2) = write_zones_conf(cfg, server, log).await {
            log(format!("zones.conf: {}", e2.message()));
        }
        return Err(e);
    }
    Ok(())
}

/// Rewrites `zones.conf` from the zone files present; whether it changed.
async fn write_zones_conf(cfg: &DnsConfig, server: &str, log: Log<'_>) -> Result<bool, StepError> {
    let bind = bind_dir(cfg, server);
    let zones = existing_zones(&bind.join("zones")).await?;
    let mut text = String::from("# Written by berth: one line per zone file in zones/.\n");
    for zone in &zones {
        let file = zone_file(cfg, server, zone);
        let file = std::path::absolute(&file).unwrap_or(file);
        text.push_str(&format!(
            "zone \"{zone}\" {{ type master; file \"{}\"; }};\n",
            file.display()
        ));
    }
    let conf = bind.join("zones.conf");
    if read_optional(&conf).await?.as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    write_atomic(&conf, &text).await?;
    log(format!("wrote {} ({} zones)", conf.display(), zones.len()));
    Ok(true)
}

/// Tells named: `rndc reconfig` when zones.conf changed (it loads new zones and drops
/// removed ones, but does not reload zones it has), then `rndc reload <zone>` for each of
/// `reload` (zones named already had). A zone named does not know although its file was
/// there before (an earlier attempt stopped between zones.conf and reconfig) gets a
/// reconfig and another reload.
async fn tell_named(
    cfg: &DnsConfig,
    zones_conf_changed: bool,
    reload: &[String],
    log: Log<'_>,
) -> Result<(), StepError> {
    if zones_conf_changed {
        rndc(cfg, &["reconfig"], log).await?;
    }
    for zone in reload {
        if rndc(cfg, &["reload", zone], log).await.is_err() {
            log(format!("rndc reload {zone} failed; trying rndc reconfig"));
            rndc(cfg, &["reconfig"], log).await?;
            rndc(cfg, &["reload", zone], log).await?;
        }
    }
    Ok(())
}

/// `<bind>/sites/<uri>`: the names last written for the site.
fn names_file(cfg: &DnsConfig, server: &str, uri: &HostName) -> PathBuf {
    bind_dir(cfg, server).join("sites").join(uri.as_str())
}

/// The names listed in a file of names, one a line (none when it does not exist).
async fn read_names(path: &Path) -> Result<Vec<String>, StepError> {
    Ok(read_optional(path)
        .await?
        .map(|t| {
            t.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && HostName::parse(l).is_ok())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

async fn write_names(path: &Path, names: &[String]) -> Result<(), StepError> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| StepError::permanent(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut text = String::new();
    for n in names {
        text.push_str(n);
        text.push('\n');
    }
    write_atomic(path, &text).await
}

/// The names of the site before this step (as last written), but those it still has.
async fn dropped_names(
    cfg: &DnsConfig,
    server: &str,
    site: &SiteArgs,
) -> Result<Vec<HostName>, StepError> {
    let current: Vec<&str> = std::iter::once(&site.uri)
        .chain(&site.aliases)
        .map(HostName::as_str)
        .collect();
    Ok(read_names(&names_file(cfg, server, &site.uri))
        .await?
        .iter()
        .filter(|n| !current.contains(&n.as_str()))
        .filter_map(|n| HostName::parse(n).ok())
        .collect())
}

/// Removes the files of zones this worker made that are left without records (the caller
/// has checked them empty); each is kept in `written` to be put back if named cannot be
/// told. Returns the zones removed.
async fn remove_empty_zones(
    empty: Vec<Pending>,
    written: &mut Vec<Pending>,
    log: Log<'_>,
) -> Result<Vec<String>, StepError> {
    let mut gone = Vec::new();
    for p in empty {
        if let Err(e) = tokio::fs::rename(&p.path, removed_copy(&p.path)).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            put_back(written, log).await;
            return Err(StepError::permanent(format!(
                "cannot remove {}: {e}",
                p.path.display()
            )));
        }
        log(format!(
            "zone {}: no record left in this zone berth made; zone removed",
            p.zone
        ));
        gone.push(p.zone.clone());
        written.push(p);
    }
    Ok(gone)
}

/// `<zone file>.removed`: where [`remove_empty_zones`] keeps a removed zone's last file.
fn removed_copy(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".removed");
    PathBuf::from(p)
}

/// Whether a removed zone's last file can come back as it is for `site`: it holds every
/// record the site wants and nothing else (so no record of another site, nor of a name
/// this site no longer has, comes back with it).
fn restorable(origin: &str, text: &str, site: &SiteArgs, ip: IpAddr) -> bool {
    let Ok(zone) = Zone::parse(origin, text) else {
        return false;
    };
    let mut with = zone.clone();
    let complete = with
        .upsert_site(SiteRecords {
            uri: &site.uri,
            aliases: &site.aliases,
            ip,
        })
        .is_ok_and(|changes| changes.is_empty());
    let mut without = zone;
    without.remove_site(&site.uri, &site.aliases);
    complete && without.is_empty()
}

/// Updates `zones.made`: `added` zones created, `removed` ones gone.
async fn note_made(
    cfg: &DnsConfig,
    server: &str,
    added: &[String],
    removed: &[String],
) -> Result<(), StepError> {
    if added.is_empty() && removed.is_empty() {
        return Ok(());
    }
    let path = bind_dir(cfg, server).join("zones.made");
    let mut made = read_names(&path).await?;
    made.retain(|z| !removed.contains(z));
    for z in added {
        if !made.contains(z) {
            made.push(z.clone());
        }
    }
    made.sort();
    write_names(&path, &made).await
}

fn describe(changes: &[Change]) -> String {
    changes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn zone_error(path: &Path, e: ZoneError) -> StepError {
    StepError::permanent(format!("{}: {e}", path.display()))
}

/// `site-records`: the site's `uri` and `aliases`, its address `ip` (or `web_host` to
/// resolve instead; `ns`: the name server of a zone this creates, default
/// [`DEFAULT_NS`]). Puts the site's address record and its aliases' CNAMEs in the zones
/// of its names, creating zones as needed. Returns the zones changed, each with its
/// serial (none for a zone removed) and its changes.
pub async fn site_records(
    cfg: &DnsConfig,
    server: &str,
    names: &SiteNames,
    log: Log<'_>,
) -> Result<Vec<ZoneChange>, StepError> {
    check_server(server)?;
    let site = site_args(names)?;
    let ip = site_ip(names, log).await?;
    let ns = match names.ns.as_deref() {
        Some(ns) => HostName::parse(ns.trim_end_matches('.'))
            .map_err(|e| StepError::permanent(format!("ns: {e}")))?
            .as_str()
            .to_owned(),
        None => DEFAULT_NS.to_owned(),
    };

    let lock = server_lock(server);
    let _guard = lock.lock().await;
    let zones_dir = bind_dir(cfg, server).join("zones");
    tokio::fs::create_dir_all(&zones_dir)
        .await
        .map_err(|e| StepError::permanent(format!("cannot create {}: {e}", zones_dir.display())))?;
    let existing = existing_zones(&zones_dir).await?;
    let zones = zones_of(&site, &existing, false)?;
    let dropped = dropped_names(cfg, server, &site).await?;
    let made = read_names(&bind_dir(cfg, server).join("zones.made")).await?;
    // The zones of names the site no longer has, where their records may be left.
    let mut dropped_zones = Vec::new();
    for name in &dropped {
        if let Ok(z) = zone_for(name, &existing)
            && existing.contains(&z)
            && !zones.contains(&z)
            && !dropped_zones.contains(&z)
        {
            dropped_zones.push(z);
        }
    }
    let today = chrono::Utc::now().date_naive();

    let mut edits = Vec::new();
    let mut restores = Vec::new();
    let mut empty = Vec::new();
    let mut created = Vec::new();
    let mut report = Vec::new();
    let mut reload = Vec::new();
    for origin in zones.iter().chain(&dropped_zones) {
        let path = zone_file(cfg, server, origin);
        let old = read_optional(&path).await?;
        let wanted = zones.contains(origin);
        if old.is_none() && !wanted {
            continue;
        }
        if old.is_none()
            && let Some(text) = read_optional(&removed_copy(&path)).await?
            && restorable(origin, &text, &site, ip)
        {
            log(format!(
                "zone {origin}: put back as named last loaded it, before this site's records were removed"
            ));
            created.push(origin.clone());
            report.push(ZoneChange {
                zone: origin.clone(),
                serial: Zone::parse(origin, &text).ok().map(|z| z.soa.serial),
                changes: Vec::new(),
            });
            restores.push((
                Pending {
                    zone: origin.clone(),
                    path,
                    old: None,
                },
                text,
            ));
            continue;
        }
        let mut zone = match &old {
            Some(text) => Zone::parse(origin, text).map_err(|e| zone_error(&path, e))?,
            None => Zone::new(origin, &ns),
        };
        let mut changes = Vec::new();
        if wanted {
            changes = zone
                .upsert_site(SiteRecords {
                    uri: &site.uri,
                    aliases: &site.aliases,
                    ip,
                })
                .map_err(|e| StepError::permanent(format!("zone {origin}: {e}")))?;
        }
        changes.extend(zone.remove_dropped(&site.uri, &site.aliases, &dropped));
        if changes.is_empty() && old.is_some() {
            reload.push(origin.clone());
            log(format!(
                "zone {origin}: records already present; serial {} unchanged",
                zone.soa.serial
            ));
        } else if zone.is_empty() && made.contains(origin) && old.is_some() {
            log(format!("zone {origin}: {}", describe(&changes)));
            empty.push(Pending {
                zone: origin.clone(),
                path,
                old,
            });
        } else {
            zone.bump_serial(today);
            let new = if old.is_none() { " (new zone)" } else { "" };
            log(format!(
                "zone {origin}{new}: {}; serial {}",
                describe(&changes),
                zone.soa.serial
            ));
            if old.is_none() {
                created.push(origin.clone());
            } else {
                reload.push(origin.clone());
            }
            edits.push((
                Pending {
                    zone: origin.clone(),
                    path,
                    old,
                },
                zone.render(),
            ));
        }
        report.push(ZoneChange {
            zone: origin.clone(),
            serial: Some(zone.soa.serial),
            changes: changes.iter().map(ToString::to_string).collect(),
        });
    }

    let mut written = write_checked(cfg, edits, log).await?;
    for (p, text) in restores {
        if let Err(e) = write_atomic(&p.path, &text).await {
            put_back(&written, log).await;
            return Err(e);
        }
        written.push(p);
    }
    let gone = remove_empty_zones(empty, &mut written, log).await?;
    publish(cfg, server, &written, &reload, log).await?;
    note_made(cfg, server, &created, &gone).await?;
    // A removed zone's last file is of no use once the zone is there again.
    for zone in &zones {
        let copy = removed_copy(&zone_file(cfg, server, zone));
        if let Err(e) = tokio::fs::remove_file(&copy).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log(format!("cannot remove {}: {e}", copy.display()));
        }
    }
    let names: Vec<String> = std::iter::once(&site.uri)
        .chain(&site.aliases)
        .map(|n| n.as_str().to_owned())
        .collect();
    write_names(&names_file(cfg, server, &site.uri), &names).await?;
    Ok(without_serials(report, &gone))
}

/// `site-records-remove`: the site's `uri` and `aliases` (its address is not needed).
/// Removes the site's address
/// records and its aliases' CNAMEs (and those of names it had before, by this worker's
/// account) from the zones berth has; records already gone are "nothing to remove", a
/// success. A zone berth made that is left without records is removed.
pub async fn site_records_remove(
    cfg: &DnsConfig,
    server: &str,
    names: &SiteNames,
    log: Log<'_>,
) -> Result<Vec<ZoneChange>, StepError> {
    check_server(server)?;
    let mut site = site_args(names)?;
    let lock = server_lock(server);
    let _guard = lock.lock().await;
    for name in dropped_names(cfg, server, &site).await? {
        if name != site.uri && !site.aliases.contains(&name) {
            site.aliases.push(name);
        }
    }
    let zones_dir = bind_dir(cfg, server).join("zones");
    let existing = existing_zones(&zones_dir).await?;
    let made = read_names(&bind_dir(cfg, server).join("zones.made")).await?;
    let today = chrono::Utc::now().date_naive();

    let mut edits = Vec::new();
    let mut empty = Vec::new();
    let mut report = Vec::new();
    let mut touched = Vec::new();
    for origin in zones_of(&site, &existing, true)? {
        let path = zone_file(cfg, server, &origin);
        let Some(old) = read_optional(&path).await? else {
            log(format!("zone {origin}: no such zone; nothing to remove"));
            continue;
        };
        let mut zone = Zone::parse(&origin, &old).map_err(|e| zone_error(&path, e))?;
        let changes = zone.remove_site(&site.uri, &site.aliases);
        if changes.is_empty() && !(zone.is_empty() && made.contains(&origin)) {
            log(format!("zone {origin}: nothing to remove"));
        } else if zone.is_empty() && made.contains(&origin) {
            if !changes.is_empty() {
                log(format!("zone {origin}: {}", describe(&changes)));
            }
            empty.push(Pending {
                zone: origin.clone(),
                path,
                old: Some(old),
            });
        } else {
            zone.bump_serial(today);
            log(format!(
                "zone {origin}: {}; serial {}",
                describe(&changes),
                zone.soa.serial
            ));
            edits.push((
                Pending {
                    zone: origin.clone(),
                    path,
                    old: Some(old),
                },
                zone.render(),
            ));
            touched.push(origin.clone());
        }
        report.push(ZoneChange {
            zone: origin.clone(),
            serial: Some(zone.soa.serial),
            changes: changes.iter().map(ToString::to_string).collect(),
        });
    }
    let mut gone = Vec::new();
    if !edits.is_empty() || !empty.is_empty() {
        let mut written = write_checked(cfg, edits, log).await?;
        gone = remove_empty_zones(empty, &mut written, log).await?;
        publish(cfg, server, &written, &touched, log).await?;
        note_made(cfg, server, &[], &gone).await?;
    }
    let names = names_file(cfg, server, &site.uri);
    if let Err(e) = tokio::fs::remove_file(&names).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(StepError::permanent(format!(
            "cannot remove {}: {e}",
            names.display()
        )));
    }
    Ok(without_serials(report, &gone))
}

/// The report, each zone removed (`gone`) without a serial.
fn without_serials(mut report: Vec<ZoneChange>, gone: &[String]) -> Vec<ZoneChange> {
    for z in &mut report {
        if gone.contains(&z.zone) {
            z.serial = None;
        }
    }
    report
}
