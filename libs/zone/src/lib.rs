//! DNS zones for sites, without I/O: which zone a name belongs to, a zone model that
//! renders to a BIND zone file and parses berth's own zone files back, the records a site
//! owns, and SOA serials.
//!
//! A site owns, in the zones that hold its names:
//! - an address record (`A` for an IPv4 address, `AAAA` for IPv6) at its uri;
//! - a `CNAME` to its uri at each alias;
//! - except for an alias that is a zone's apex (`example.com` for the site
//!   `www.example.com`): a zone apex holds the SOA and NS records, and a CNAME may not
//!   share its name with other data, so the apex gets the site's address record instead.
//!
//! Names are stored lower case, fully qualified and without the trailing dot.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::{Datelike, NaiveDate};

use berth_hosting::HostName;

/// `$TTL` of the zones berth creates.
pub const DEFAULT_TTL: u32 = 300;
/// SOA timers of the zones berth creates: refresh, retry, expire, negative-caching TTL.
pub const DEFAULT_REFRESH: u32 = 3600;
pub const DEFAULT_RETRY: u32 = 600;
pub const DEFAULT_EXPIRE: u32 = 1_209_600;
pub const DEFAULT_MINIMUM: u32 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    /// A zone file berth cannot read back; `line` counts from 1.
    #[error("zone {zone}, line {line}: {msg}")]
    Parse {
        zone: String,
        line: usize,
        msg: String,
    },
    #[error("`{name}` has a single label: there is no parent domain to make a zone of")]
    NoZone { name: String },
    #[error("`{name}` already has {existing}, which is not this site's")]
    Conflict { name: String, existing: String },
}

/// The zone `name` belongs to: the longest of `existing` that `name` is in (equal to, or
/// a subdomain of, label by label), else a new zone made of the last two labels of
/// `name`.
///
/// There is no public-suffix list: `www.example.co.uk` with no existing zone lands in a
/// new zone `co.uk`. An operator who serves such domains creates the zone
/// (`example.co.uk`) first; passing it in `existing` makes it win, being the longer
/// match.
pub fn zone_for(name: &HostName, existing: &[String]) -> Result<String, ZoneError> {
    let name = name.as_str();
    let best = existing
        .iter()
        .map(|z| z.trim_end_matches('.').to_ascii_lowercase())
        .filter(|z| !z.is_empty() && in_zone(name, z))
        .max_by_key(|z| z.len());
    if let Some(zone) = best {
        return Ok(zone);
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return Err(ZoneError::NoZone { name: name.into() });
    }
    Ok(labels[labels.len() - 2..].join("."))
}

/// Whether `name` is `zone` or below it (label-aligned: `notexample.com` is not in
/// `example.com`). Both fully qualified, without the trailing dot, lower case.
pub fn in_zone(name: &str, zone: &str) -> bool {
    name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// The SOA serial after a change made on `today`: `YYYYMMDD00`, or `current + 1` when
/// `current` is already today's (or later, e.g. after 100 changes in a day or a clock
/// set back). Saturates at `u32::MAX` rather than wrapping.
pub fn next_serial(today: NaiveDate, current: u32) -> u32 {
    let base = (today.year().max(0) as u64) * 1_000_000
        + (today.month() as u64) * 10_000
        + (today.day() as u64) * 100;
    let base = u32::try_from(base).unwrap_or(u32::MAX);
    if current >= base {
        current.saturating_add(1)
    } else {
        base
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    /// Any other type found in a zone file (MX, TXT, …, or NS below the apex): kept as
    /// written, upper case, its data verbatim.
    Other(String),
}

impl RecordType {
    fn for_ip(ip: &IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self::A,
            IpAddr::V6(_) => Self::Aaaa,
        }
    }

    fn is_address(&self) -> bool {
        matches!(self, Self::A | Self::Aaaa)
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::A => f.write_str("A"),
            Self::Aaaa => f.write_str("AAAA"),
            Self::Cname => f.write_str("CNAME"),
            Self::Other(t) => f.write_str(t),
        }
    }
}

/// One record. `name` is fully qualified without the trailing dot; `value` is an address
/// for A/AAAA, a fully qualified name without the trailing dot for CNAME, the data as
/// written for other types. Nothing here is validated: [`Zone::parse`] validates what it
/// reads, and `named-checkzone` has the last word before BIND loads a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    /// `None`: the zone's `$TTL`.
    pub ttl: Option<u32>,
    pub rtype: RecordType,
    pub value: String,
}

impl Record {
    pub fn new(name: impl Into<String>, rtype: RecordType, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ttl: None,
            rtype,
            value: value.into(),
        }
    }
}

impl fmt::Display for Record {
    /// `A www.example.com → 127.0.0.1`, `CNAME shop.example.com → www.example.com`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} → {}", self.rtype, self.name, self.value)
    }
}

/// What an upsert or a removal did to a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(Record),
    Removed(Record),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Added(r) => write!(f, "{r}"),
            Self::Removed(r) => write!(f, "removed {r}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soa {
    /// The primary name server (MNAME), fully qualified without the trailing dot.
    pub mname: String,
    /// The responsible mailbox (RNAME) as a name: `hostmaster.example.com`.
    pub rname: String,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// `example.com`: lower case, without the trailing dot.
    pub origin: String,
    /// `$TTL`.
    pub ttl: u32,
    pub soa: Soa,
    /// The apex NS records' targets, fully qualified without the trailing dot.
    pub ns: Vec<String>,
    /// Every other record, in file order.
    pub records: Vec<Record>,
}

/// The records a site wants: its uri, its aliases and its address.
#[derive(Debug, Clone, Copy)]
pub struct SiteRecords<'a> {
    pub uri: &'a HostName,
    pub aliases: &'a [HostName],
    pub ip: IpAddr,
}

impl Zone {
    /// A new, empty zone served by `ns`: SOA MNAME and the only NS record, RNAME
    /// `hostmaster.<origin>`, serial 0 (set it with [`bump_serial`](Self::bump_serial)).
    ///
    /// `ns` inside the zone needs an address record in it, or `named-checkzone` refuses
    /// the zone.
    pub fn new(origin: &str, ns: &str) -> Self {
        let origin = origin.trim_end_matches('.').to_ascii_lowercase();
        let ns = ns.trim_end_matches('.').to_ascii_lowercase();
        Self {
            soa: Soa {
                mname: ns.clone(),
                rname: format!("hostmaster.{origin}"),
                serial: 0,
                refresh: DEFAULT_REFRESH,
                retry: DEFAULT_RETRY,
                expire: DEFAULT_EXPIRE,
                minimum: DEFAULT_MINIMUM,
            },
            origin,
            ttl: DEFAULT_TTL,
            ns: vec![ns],
            records: Vec::new(),
        }
    }

    /// Sets the serial to [`next_serial`] of today and the current one.
    pub fn bump_serial(&mut self, today: NaiveDate) {
        self.soa.serial = next_serial(today, self.soa.serial);
    }

    /// Whether `name` is this zone's apex or below it.
    pub fn contains(&self, name: &str) -> bool {
        in_zone(name, &self.origin)
    }

    /// The records at `name` (not the SOA and apex NS).
    pub fn records_at<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.records.iter().filter(move |r| r.name == name)
    }

    /// Makes the site's records in this zone what they should be (names of the site
    /// outside this zone are left to their own zones) and says what changed; an empty
    /// list means the zone already held them. Does not touch the serial.
    ///
    /// The uri's and an apex alias's address records are replaced by the site's one
    /// address (one of A or AAAA: the other family is removed). A name that is another
    /// site's (a CNAME to something else at a name needing an address or at an alias, an
    /// address record at a non-apex alias) is a [`ZoneError::Conflict`] and the zone is
    /// left as it was. Records of other types at the site's names are left alone:
    /// `named-checkzone` refuses a CNAME next to them.
    pub fn upsert_site(&mut self, site: SiteRecords<'_>) -> Result<Vec<Change>, ZoneError> {
        let mut next = self.clone();
        let mut changes = Vec::new();
        let uri = site.uri.as_str();
        let ip = site.ip.to_string();
        let addr_type = RecordType::for_ip(&site.ip);

        let mut address_names: Vec<&str> = Vec::new();
        let mut cname_names: Vec<&str> = Vec::new();
        if next.contains(uri) {
            address_names.push(uri);
        }
        for alias in site.aliases {
            let a = alias.as_str();
            if a == uri || !next.contains(a) {
                continue;
            }
            if a == next.origin {
                if !address_names.contains(&a) {
                    address_names.push(a);
                }
            } else if !cname_names.contains(&a) {
                cname_names.push(a);
            }
        }

        for name in address_names {
            if let Some(c) = next.records_at(name).find(|r| r.rtype == RecordType::Cname) {
                return Err(ZoneError::Conflict {
                    name: name.into(),
                    existing: format!("a CNAME to {}", c.value),
                });
            }
            let want = Record::new(name, addr_type.clone(), ip.clone());
            changes.extend(next.retain_at(name, |r| {
                !r.rtype.is_address() || (r.rtype == want.rtype && r.value == want.value)
            }));
            if !next
                .records
                .iter()
                .any(|r| r.name == name && r.rtype == want.rtype)
            {
                next.records.push(want.clone());
                changes.push(Change::Added(want));
            }
        }

        for name in cname_names {
            let mut present = false;
            for r in next.records_at(name) {
                match r.rtype {
                    RecordType::Cname if r.value == uri => present = true,
                    RecordType::Cname => {
                        return Err(ZoneError::Conflict {
                            name: name.into(),
                            existing: format!("a CNAME to {}", r.value),
                        });
                    }
                    RecordType::A | RecordType::Aaaa => {
                        return Err(ZoneError::Conflict {
                            name: name.into(),
                            existing: format!("an {} record ({})", r.rtype, r.value),
                        });
                    }
                    RecordType::Other(_) => {}
                }
            }
            if !present {
                let want = Record::new(name, RecordType::Cname, uri);
                next.records.push(want.clone());
                changes.push(Change::Added(want));
            }
        }

        *self = next;
        Ok(changes)
    }

    /// Removes the site's records from this zone: the address records at its uri and at
    /// an apex alias, and the CNAMEs to its uri at its aliases (a CNAME at an alias that
    /// points elsewhere is another site's and stays). Says what it removed; an empty list
    /// means there was nothing to remove. Does not touch the serial.
    pub fn remove_site(&mut self, uri: &HostName, aliases: &[HostName]) -> Vec<Change> {
        let uri = uri.as_str();
        let mut changes = Vec::new();
        if self.contains(uri) {
            changes.extend(self.retain_at(uri, |r| !r.rtype.is_address()));
        }
        for alias in aliases {
            let a = alias.as_str();
            if a == uri || !self.contains(a) {
                continue;
            }
            if a == self.origin {
                changes.extend(self.retain_at(a, |r| !r.rtype.is_address()));
            } else {
                changes.extend(
                    self.retain_at(a, |r| !(r.rtype == RecordType::Cname && r.value == uri)),
                );
            }
        }
        changes
    }

    /// Removes the records of names the site `uri` no longer has (`dropped`: names it
    /// had, by the worker's own account, and has no more): the address records at a
    /// dropped name that is this zone's apex, and, at any name not among `aliases`, the
    /// CNAMEs to `uri` (only the site's own aliases point there). Says what it removed.
    /// Does not touch the serial.
    pub fn remove_dropped(
        &mut self,
        uri: &HostName,
        aliases: &[HostName],
        dropped: &[HostName],
    ) -> Vec<Change> {
        let uri = uri.as_str();
        let mut changes = Vec::new();
        let apex = self.origin.clone();
        if apex != uri
            && dropped.iter().any(|d| d.as_str() == apex)
            && !aliases.iter().any(|a| a.as_str() == apex)
        {
            changes.extend(self.retain_at(&apex, |r| !r.rtype.is_address()));
        }
        let mut removed = Vec::new();
        self.records.retain(|r| {
            let stale = r.rtype == RecordType::Cname
                && r.value == uri
                && !aliases.iter().any(|a| a.as_str() == r.name);
            if stale {
                removed.push(Change::Removed(r.clone()));
            }
            !stale
        });
        changes.extend(removed);
        changes
    }

    /// Whether the zone holds nothing but its SOA and apex NS records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Keeps the records at `name` for which `keep` holds; the others are returned as
    /// removals.
    fn retain_at(&mut self, name: &str, keep: impl Fn(&Record) -> bool) -> Vec<Change> {
        let mut removed = Vec::new();
        self.records.retain(|r| {
            if r.name == name && !keep(r) {
                removed.push(Change::Removed(r.clone()));
                false
            } else {
                true
            }
        });
        removed
    }

    /// The zone file: `$ORIGIN`, `$TTL`, SOA, NS, then the records, every name fully
    /// qualified.
    pub fn render(&self) -> String {
        let o = &self.origin;
        let s = &self.soa;
        let mut out = format!(
            "; zone {o}: written by berth, which rewrites the whole file on each change\n\
             $ORIGIN {o}.\n\
             $TTL {}\n\
             {o}. IN SOA {}. {}. {} {} {} {} {}\n",
            self.ttl, s.mname, s.rname, s.serial, s.refresh, s.retry, s.expire, s.minimum
        );
        for ns in &self.ns {
            out.push_str(&format!("{o}. IN NS {ns}.\n"));
        }
        for r in &self.records {
            let ttl = r.ttl.map(|t| format!(" {t}")).unwrap_or_default();
            let value = match r.rtype {
                RecordType::Cname => format!("{}.", r.value),
                _ => r.value.clone(),
            };
            out.push_str(&format!("{}.{ttl} IN {} {value}\n", r.name, r.rtype));
        }
        out
    }

    /// Reads a zone file of the zone `origin` back: what [`render`](Self::render) writes,
    /// and the usual zone-file syntax around it (relative names, `@`, owner-less lines
    /// continuing the previous owner, comments, parentheses, `IN` and TTLs in either
    /// order). Not supported, each a clear error: `$INCLUDE`, `$GENERATE`, an `$ORIGIN`
    /// other than the zone's, classes other than IN, TTLs with units, and names outside
    /// the zone. Any input gives a zone or an error, never a panic.
    pub fn parse(origin: &str, text: &str) -> Result<Self, ZoneError> {
        let origin = origin.trim_end_matches('.').to_ascii_lowercase();
        let err = |line: usize, msg: String| ZoneError::Parse {
            zone: origin.clone(),
            line,
            msg,
        };
        check_name(&origin).map_err(|m| err(0, m))?;
        let mut ttl = DEFAULT_TTL;
        let mut soa: Option<Soa> = None;
        let mut ns = Vec::new();
        let mut records = Vec::new();
        let mut last_owner: Option<String> = None;

        for (line_no, line) in logical_lines(text).map_err(|(l, m)| err(l, m))? {
            let e = |m: String| err(line_no, m);
            let owner_blank = line.starts_with([' ', '\t']);
            let tokens = tokens(&line);
            if tokens.is_empty() {
                continue;
            }
            let first = tokens[0].1;
            if !owner_blank && first.starts_with('$') {
                match first.to_ascii_uppercase().as_str() {
                    "$TTL" => {
                        let [_, (_, t)] = tokens[..] else {
                            return Err(e("$TTL takes one number".into()));
                        };
                        ttl = number(t).map_err(e)?;
                    }
                    "$ORIGIN" => {
                        let [_, (_, o)] = tokens[..] else {
                            return Err(e("$ORIGIN takes one name".into()));
                        };
                        let o = absolute(o, &origin).map_err(e)?;
                        if o != origin {
                            return Err(e(format!(
                                "$ORIGIN {o} is not the zone's origin {origin}"
                            )));
                        }
                    }
                    other => return Err(e(format!("{other} is not supported"))),
                }
                continue;
            }

            let mut i = 0;
            let owner = if owner_blank {
                last_owner
                    .clone()
                    .ok_or_else(|| e("a record without an owner name comes first".into()))?
            } else {
                i = 1;
                absolute(first, &origin).map_err(e)?
            };
            if !in_zone(&owner, &origin) {
                return Err(e(format!("{owner} is outside the zone {origin}")));
            }
            last_owner = Some(owner.clone());

            let mut rec_ttl = None;
            let mut class_seen = false;
            let rtype = loop {
                let Some(&(_, tok)) = tokens.get(i) else {
                    return Err(e("a record without a type".into()));
                };
                i += 1;
                let upper = tok.to_ascii_uppercase();
                if tok.bytes().all(|b| b.is_ascii_digit()) && rec_ttl.is_none() {
                    rec_ttl = Some(number(tok).map_err(e)?);
                } else if upper == "IN" && !class_seen {
                    class_seen = true;
                } else if matches!(upper.as_str(), "CH" | "HS" | "CS" | "ANY") {
                    return Err(e(format!("class {upper} is not supported")));
                } else if upper.starts_with(|c: char| c.is_ascii_alphabetic())
                    && upper
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    break upper;
                } else {
                    return Err(e(format!("`{tok}` is not a TTL, class or record type")));
                }
            };
            let rdata: Vec<&str> = tokens[i..].iter().map(|t| t.1).collect();
            let rdata_raw = tokens.get(i).map(|t| line[t.0..].trim()).unwrap_or("");
            let one = |what: &str| -> Result<&str, ZoneError> {
                match rdata[..] {
                    [v] => Ok(v),
                    _ => Err(e(format!("{rtype} takes one {what}"))),
                }
            };

            match rtype.as_str() {
                "SOA" => {
                    if owner != origin {
                        return Err(e(format!("an SOA at {owner}, not the apex {origin}")));
                    }
                    if soa.is_some() {
                        return Err(e("a second SOA".into()));
                    }
                    let [m, r, serial, refresh, retry, expire, minimum] = rdata[..] else {
                        return Err(e(
                            "SOA takes mname rname serial refresh retry expire minimum".into(),
                        ));
                    };
                    soa = Some(Soa {
                        mname: absolute(m, &origin).map_err(e)?,
                        rname: absolute(r, &origin).map_err(e)?,
                        serial: number(serial).map_err(e)?,
                        refresh: number(refresh).map_err(e)?,
                        retry: number(retry).map_err(e)?,
                        expire: number(expire).map_err(e)?,
                        minimum: number(minimum).map_err(e)?,
                    });
                }
                "NS" if owner == origin => {
                    ns.push(absolute(one("name")?, &origin).map_err(e)?);
                }
                "A" => {
                    let v = one("address")?;
                    v.parse::<Ipv4Addr>()
                        .map_err(|_| e(format!("`{v}` is not an IPv4 address")))?;
                    records.push(Record {
                        name: owner,
                        ttl: rec_ttl,
                        rtype: RecordType::A,
                        value: v.into(),
                    });
                }
                "AAAA" => {
                    let v = one("address")?;
                    let a = v
                        .parse::<Ipv6Addr>()
                        .map_err(|_| e(format!("`{v}` is not an IPv6 address")))?;
                    records.push(Record {
                        name: owner,
                        ttl: rec_ttl,
                        rtype: RecordType::Aaaa,
                        value: a.to_string(),
                    });
                }
                "CNAME" => {
                    let v = absolute(one("name")?, &origin).map_err(e)?;
                    records.push(Record {
                        name: owner,
                        ttl: rec_ttl,
                        rtype: RecordType::Cname,
                        value: v,
                    });
                }
                _ => {
                    if rdata_raw.is_empty() {
                        return Err(e(format!("{rtype} without data")));
                    }
                    records.push(Record {
                        name: owner,
                        ttl: rec_ttl,
                        rtype: RecordType::Other(rtype),
                        value: rdata_raw.to_string(),
                    });
                }
            }
        }

        let soa = soa.ok_or_else(|| err(0, "no SOA record".into()))?;
        if ns.is_empty() {
            return Err(err(0, "no NS record at the apex".into()));
        }
        Ok(Self {
            origin,
            ttl,
            soa,
            ns,
            records,
        })
    }
}

/// Splits a zone file into logical lines (numbered by where they start): comments cut,
/// parenthesised continuations joined, parentheses turned into spaces.
fn logical_lines(text: &str) -> Result<Vec<(usize, String)>, (usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    let mut depth = 0usize;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if depth == 0 {
            start = n;
            current.clear();
        } else {
            current.push(' ');
        }
        let mut in_quote = false;
        let mut escaped = false;
        for c in line.chars() {
            if escaped {
                escaped = false;
                current.push(c);
                continue;
            }
            match c {
                '\\' => {
                    escaped = true;
                    current.push(c);
                }
                '"' => {
                    in_quote = !in_quote;
                    current.push(c);
                }
                ';' if !in_quote => break,
                '(' if !in_quote => {
                    depth += 1;
                    current.push(' ');
                }
                ')' if !in_quote => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or((n, "a `)` without its `(`".to_string()))?;
                    current.push(' ');
                }
                _ => current.push(c),
            }
        }
        if in_quote {
            return Err((n, "a quoted string is not closed on its line".into()));
        }
        if depth == 0 {
            out.push((start, std::mem::take(&mut current)));
        }
    }
    if depth > 0 {
        return Err((start, "a `(` is never closed".into()));
    }
    Ok(out)
}

/// Whitespace-separated tokens with their byte offsets (quotes are not special: only the
/// tokens before the record data are looked at one by one).
fn tokens(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push((s, &line[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    out
}

fn number(tok: &str) -> Result<u32, String> {
    if tok.is_empty() || !tok.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{tok}` is not a number (units such as 1h are not supported)"
        ));
    }
    tok.parse::<u32>()
        .map_err(|_| format!("`{tok}` is too large"))
}

/// A name as written in a zone file made fully qualified (no trailing dot), lower case.
fn absolute(tok: &str, origin: &str) -> Result<String, String> {
    let name = if tok == "@" {
        origin.to_string()
    } else if let Some(abs) = tok.strip_suffix('.') {
        abs.to_ascii_lowercase()
    } else {
        format!("{}.{origin}", tok.to_ascii_lowercase())
    };
    check_name(&name)?;
    Ok(name)
}

/// Labels of 1–63 of `[a-z0-9_*-]`, at most 253 characters.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an empty name".into());
    }
    if name.len() > 253 {
        return Err(format!("`{name}` is longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "`{name}` has an empty label or one over 63 characters"
            ));
        }
        if !label.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'*')
        }) {
            return Err(format!(
                "`{name}` may only hold letters, digits, `-`, `_` and `*`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> HostName {
        HostName::parse(s).unwrap()
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn site_zone() -> Zone {
        let mut z = Zone::new("example.com", "ns1.host.net");
        let aliases = [h("example.com"), h("shop.example.com")];
        z.upsert_site(SiteRecords {
            uri: &h("www.example.com"),
            aliases: &aliases,
            ip: "127.0.0.1".parse().unwrap(),
        })
        .unwrap();
        z
    }

    #[test]
    fn zone_for_takes_the_longest_existing_zone() {
        let existing = vec!["example.com".to_string(), "shop.example.com".to_string()];
        assert_eq!(
            zone_for(&h("a.shop.example.com"), &existing).unwrap(),
            "shop.example.com"
        );
        assert_eq!(
            zone_for(&h("shop.example.com"), &existing).unwrap(),
            "shop.example.com"
        );
        assert_eq!(
            zone_for(&h("www.example.com"), &existing).unwrap(),
            "example.com"
        );
        assert_eq!(
            zone_for(&h("example.com"), &existing).unwrap(),
            "example.com"
        );
    }

    #[test]
    fn zone_for_is_label_aligned() {
        let existing = vec!["example.com".to_string()];
        assert_eq!(
            zone_for(&h("notexample.com"), &existing).unwrap(),
            "notexample.com"
        );
    }

    #[test]
    fn zone_for_new_zone_is_the_last_two_labels() {
        assert_eq!(zone_for(&h("a.b.example.org"), &[]).unwrap(), "example.org");
        // No public-suffix list: documented.
        assert_eq!(zone_for(&h("a.b.co.uk"), &[]).unwrap(), "co.uk");
        // An operator-created zone wins.
        assert_eq!(
            zone_for(&h("a.b.co.uk"), &["b.co.uk.".to_string()]).unwrap(),
            "b.co.uk"
        );
        assert!(matches!(
            zone_for(&h("localhost"), &[]),
            Err(ZoneError::NoZone { .. })
        ));
    }

    #[test]
    fn next_serial_rules() {
        let today = day(2026, 11, 22);
        assert_eq!(next_serial(today, 0), 2026112200);
        assert_eq!(next_serial(today, 2026112100), 2026112200);
        assert_eq!(next_serial(today, 2026112200), 2026112201);
        assert_eq!(next_serial(today, 2026112299), 2026112300);
        assert_eq!(next_serial(today, 2026112503), 2026112504);
        assert_eq!(next_serial(today, u32::MAX), u32::MAX);
        assert_eq!(next_serial(day(2026, 1, 2), 7), 2026010200);
    }

    #[test]
    fn upsert_adds_address_and_cnames_and_apex_address() {
        let z = site_zone();
        assert_eq!(
            z.records,
            vec![
                Record::new("www.example.com", RecordType::A, "127.0.0.1"),
                Record::new("example.com", RecordType::A, "127.0.0.1"),
                Record::new("shop.example.com", RecordType::Cname, "www.example.com"),
            ]
        );
    }

    #[test]
    fn upsert_is_idempotent() {
        let mut z = site_zone();
        let before = z.clone();
        let aliases = [h("example.com"), h("shop.example.com")];
        let changes = z
            .upsert_site(SiteRecords {
                uri: &h("www.example.com"),
                aliases: &aliases,
                ip: "127.0.0.1".parse().unwrap(),
            })
            .unwrap();
        assert!(changes.is_empty());
        assert_eq!(z, before);
    }

    #[test]
    fn upsert_replaces_the_address_on_a_new_ip() {
        let mut z = site_zone();
        let changes = z
            .upsert_site(SiteRecords {
                uri: &h("www.example.com"),
                aliases: &[],
                ip: "::1".parse().unwrap(),
            })
            .unwrap();
        assert_eq!(
            changes,
            vec![
                Change::Removed(Record::new("www.example.com", RecordType::A, "127.0.0.1")),
                Change::Added(Record::new("www.example.com", RecordType::Aaaa, "::1")),
            ]
        );
        assert_eq!(changes[1].to_string(), "AAAA www.example.com → ::1");
    }

    #[test]
    fn upsert_leaves_names_outside_the_zone() {
        let mut z = Zone::new("example.com", "ns1.host.net");
        let aliases = [h("www.example.org"), h("a.example.com")];
        z.upsert_site(SiteRecords {
            uri: &h("www.example.com"),
            aliases: &aliases,
            ip: "10.0.0.1".parse().unwrap(),
        })
        .unwrap();
        assert_eq!(z.records.len(), 2);
        // The other zone gets only the CNAME, pointing out of zone.
        let mut org = Zone::new("example.org", "ns1.host.net");
        org.upsert_site(SiteRecords {
            uri: &h("www.example.com"),
            aliases: &aliases,
            ip: "10.0.0.1".parse().unwrap(),
        })
        .unwrap();
        assert_eq!(
            org.records,
            vec![Record::new(
                "www.example.org",
                RecordType::Cname,
                "www.example.com"
            )]
        );
    }

    #[test]
    fn upsert_refuses_another_sites_names_and_changes_nothing() {
        let mut z = site_zone();
        let before = z.clone();
        // shop.example.com is a CNAME of www: another site can't take it as its uri.
        let err = z
            .upsert_site(SiteRecords {
                uri: &h("shop.example.com"),
                aliases: &[],
                ip: "127.0.0.2".parse().unwrap(),
            })
            .unwrap_err();
        assert!(matches!(err, ZoneError::Conflict { .. }), "{err}");
        // Nor as an alias.
        let aliases = [h("other.example.com"), h("shop.example.com")];
        let err = z
            .upsert_site(SiteRecords {
                uri: &h("blog.example.com"),
                aliases: &aliases,
                ip: "127.0.0.2".parse().unwrap(),
            })
            .unwrap_err();
        assert!(
            err.to_string().contains("CNAME to www.example.com"),
            "{err}"
        );
        // www's address record can't become an alias.
        let aliases = [h("www.example.com")];
        assert!(
            z.upsert_site(SiteRecords {
                uri: &h("blog.example.com"),
                aliases: &aliases,
                ip: "127.0.0.2".parse().unwrap(),
            })
            .is_err()
        );
        assert_eq!(z, before);
    }

    #[test]
    fn remove_takes_only_the_sites_records() {
        let mut z = site_zone();
        let aliases = [h("blog2.example.com")];
        z.upsert_site(SiteRecords {
            uri: &h("blog.example.com"),
            aliases: &aliases,
            ip: "127.0.0.2".parse().unwrap(),
        })
        .unwrap();
        // A CNAME at shop pointing to www is www's: removing blog with a claim on shop
        // leaves it.
        let changes = z.remove_site(
            &h("blog.example.com"),
            &[h("blog2.example.com"), h("shop.example.com")],
        );
        assert_eq!(changes.len(), 2);
        let changes = z.remove_site(
            &h("www.example.com"),
            &[h("example.com"), h("shop.example.com")],
        );
        assert_eq!(changes.len(), 3);
        assert_eq!(
            changes[0].to_string(),
            "removed A www.example.com → 127.0.0.1"
        );
        assert!(z.records.is_empty());
        assert!(z.remove_site(&h("www.example.com"), &[]).is_empty());
    }

    #[test]
    fn dropped_aliases_lose_their_records_and_other_sites_keep_theirs() {
        let mut z = site_zone();
        z.upsert_site(SiteRecords {
            uri: &h("blog.example.com"),
            aliases: &[h("news.example.com")],
            ip: "127.0.0.2".parse().unwrap(),
        })
        .unwrap();
        // www.example.com drops example.com (the apex) and shop.example.com.
        let changes = z.remove_dropped(
            &h("www.example.com"),
            &[],
            &[h("example.com"), h("shop.example.com")],
        );
        let removed: Vec<String> = changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            removed,
            [
                "removed A example.com → 127.0.0.1",
                "removed CNAME shop.example.com → www.example.com"
            ]
        );
        let left: Vec<String> = z.records.iter().map(ToString::to_string).collect();
        assert_eq!(
            left,
            [
                "A www.example.com → 127.0.0.1",
                "A blog.example.com → 127.0.0.2",
                "CNAME news.example.com → blog.example.com"
            ]
        );
        // Nothing more to drop; a kept alias stays; the apex of another site's is kept.
        assert!(
            z.remove_dropped(&h("blog.example.com"), &[h("news.example.com")], &[])
                .is_empty()
        );
        assert!(!z.is_empty());
        z.remove_site(&h("www.example.com"), &[]);
        z.remove_site(&h("blog.example.com"), &[h("news.example.com")]);
        assert!(z.is_empty());
    }

    #[test]
    fn render_and_parse_round_trip() {
        let mut z = site_zone();
        z.bump_serial(day(2026, 11, 22));
        z.records.push(Record::new(
            "example.com",
            RecordType::Other("MX".into()),
            "10 mail.example.com.",
        ));
        z.records.push(Record::new(
            "_dmarc.example.com",
            RecordType::Other("TXT".into()),
            "\"v=DMARC1; p=none\"",
        ));
        z.records.push(Record {
            ttl: Some(60),
            ..Record::new("v6.example.com", RecordType::Aaaa, "2001:db8::1")
        });
        let text = z.render();
        assert!(text.contains("example.com. IN SOA ns1.host.net. hostmaster.example.com. 2026112200 3600 600 1209600 300\n"), "{text}");
        assert!(
            text.contains("shop.example.com. IN CNAME www.example.com.\n"),
            "{text}"
        );
        assert!(
            text.contains("v6.example.com. 60 IN AAAA 2001:db8::1\n"),
            "{text}"
        );
        let back = Zone::parse("example.com", &text).unwrap();
        assert_eq!(back, z);
        assert_eq!(back.render(), text);
    }

    #[test]
    fn parse_reads_usual_zone_syntax() {
        let text = "\
$TTL 3600
@   IN  SOA ns1 hostmaster (
        2024010101 ; serial
        7200 900 604800 60 )
    IN  NS  ns1
ns1     IN A 192.0.2.1
www 600 IN A 192.0.2.2
        IN AAAA 2001:DB8::2
shop IN 60 CNAME www
EXAMPLE.com. MX 10 mail.other.net. ; comment
";
        let z = Zone::parse("example.com.", text).unwrap();
        assert_eq!(z.ttl, 3600);
        assert_eq!(z.soa.mname, "ns1.example.com");
        assert_eq!(z.soa.serial, 2024010101);
        assert_eq!(z.soa.minimum, 60);
        assert_eq!(z.ns, vec!["ns1.example.com"]);
        assert_eq!(z.records[2].rtype, RecordType::Aaaa);
        assert_eq!(z.records[2].name, "www.example.com");
        assert_eq!(z.records[2].value, "2001:db8::2");
        assert_eq!(z.records[3].value, "www.example.com");
        assert_eq!(z.records[3].ttl, Some(60));
        assert_eq!(z.records[4].rtype, RecordType::Other("MX".into()));
        assert_eq!(z.records[4].value, "10 mail.other.net.");
    }

    #[test]
    fn parse_errors_are_clear() {
        let head = "$ORIGIN example.com.\n@ IN SOA ns. h. 1 2 3 4 5\n@ IN NS ns.\n";
        let cases = [
            (false, "", "no SOA"),
            (false, "@ IN SOA ns. h. 1 2 3 4 5\n", "no NS"),
            (false, "  IN A 1.2.3.4\n", "without an owner"),
            (true, "www IN A 300.1.1.1\n", "not an IPv4"),
            (true, "www IN AAAA 1.2.3.4\n", "not an IPv6"),
            (true, "www IN A\n", "takes one address"),
            (true, "www.example.org. IN A 1.2.3.4\n", "outside the zone"),
            (true, "$INCLUDE /etc/passwd\n", "not supported"),
            (true, "$ORIGIN example.org.\n", "not the zone's origin"),
            (true, "$TTL 1h\n", "units"),
            (true, "www CH A 1.2.3.4\n", "class CH"),
            (true, "www IN CNAME a..b.\n", "empty label"),
            (true, "www IN TXT \"open\n", "not closed"),
            (true, "www IN A ( 1.2.3.4\n", "never closed"),
            (true, "www IN A 1.2.3.4 )\n", "without its"),
            (true, "@ IN SOA ns. h. 1 2 3 4 5\n", "second SOA"),
            (true, "www IN SOA ns. h. 1 2 3 4 5\n", "not the apex"),
            (true, "www IN 99999999999 A 1.2.3.4\n", "too large"),
            (true, "www IN MX\n", "without data"),
            (true, "www IN 1.2.3.4\n", "not a TTL, class or record type"),
        ];
        for (with_head, body, want) in cases {
            let text = if with_head {
                format!("{head}{body}")
            } else {
                body.to_string()
            };
            let err = Zone::parse("example.com", &text)
                .expect_err(body)
                .to_string();
            assert!(err.contains(want), "{body:?}: {err}");
        }
    }

    #[test]
    fn parse_never_panics_on_odd_input() {
        let samples = [
            "\u{0}",
            "(",
            ")",
            "\"",
            "\\",
            "$",
            "@",
            "@ (",
            "é IN A 1.2.3.4",
            "@ IN SOA é. ü. 1 2 3 4 5",
            "\n\n\t\t;",
            "$TTL",
            "$ORIGIN",
            "x 1 1 1",
            "@ IN SOA ( ; \n ) ",
            "a\\\n",
            "ÿ\u{10FFFF}",
            "@ IN NS \"",
            "*.example.com. IN A 1.1.1.1",
        ];
        for s in samples {
            let _ = Zone::parse("example.com", s);
            let _ = Zone::parse("", s);
            let _ = Zone::parse("é", s);
        }
        // Every prefix and every single-byte change of a real file.
        let text = site_zone().render();
        for i in 0..text.len() {
            if text.is_char_boundary(i) {
                let _ = Zone::parse("example.com", &text[..i]);
            }
        }
        let bytes = text.as_bytes();
        for i in 0..bytes.len() {
            for b in [b'(', b')', b'"', b';', b'.', b' ', b'\n', b'@', b'9', b'x'] {
                let mut v = bytes.to_vec();
                v[i] = b;
                let _ = Zone::parse("example.com", &String::from_utf8_lossy(&v));
            }
        }
    }
}
