//! The package scan of a platform, without I/O: which files of a Drupal codebase it needs
//! ([`wanted`], [`descend`]) and what they say ([`scan`]): Drupal's version, and the
//! modules, themes and install profiles there, each with its version (from its info file)
//! and schema version (the highest `<name>_update_N` in its `.install` file) — what Aegir's
//! platform verify records.
//!
//! The walker that feeds it lives with the http worker (`berth_http::scan`). Everything here
//! takes text and gives values back; no input makes it panic.
//!
//! Where things are looked for (paths relative to the platform root):
//!
//! | Drupal | core version | modules, themes, profiles |
//! |---|---|---|
//! | 7 | `includes/bootstrap.inc` (`define('VERSION', '7.98');`) | `*.info` under `modules/`, `themes/`, `profiles/`, `sites/all/` |
//! | 8+ | `core/lib/Drupal.php` (`const VERSION = '10.3.1';`) | `*.info.yml` under `core/`, `modules/`, `themes/`, `profiles/`, `sites/all/` |
//!
//! Not scanned: `tests/` directories (test modules), hidden packages, site-specific
//! directories (`sites/<site>/`: they belong to that site, not to the platform), `vendor/`,
//! `node_modules/`, anything under a directory whose name starts with `.`.

use berth_contracts::{Package, PackageType};
use std::collections::{BTreeMap, BTreeSet};

/// The Drupal 7 file holding `define('VERSION', '7.98');`.
pub const D7_CORE_FILE: &str = "includes/bootstrap.inc";
/// The Drupal 8+ file holding `const VERSION = '10.3.1';`.
pub const D8_CORE_FILE: &str = "core/lib/Drupal.php";

/// Drupal 8 and later install every module at least at this schema version
/// (`\Drupal::CORE_MINIMUM_SCHEMA_VERSION`); Drupal 7 uses 0 (`SCHEMA_INSTALLED`).
pub const D8_MINIMUM_SCHEMA_VERSION: i64 = 8000;

/// What the scan needs of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Not needed at all.
    No,
    /// Only that it exists (a profile's `translations/*.po`): pass it with empty contents.
    NameOnly,
    /// Its text.
    Contents,
}

/// Directory names never walked into, wherever they are.
const SKIPPED_DIRS: [&str; 4] = ["tests", "node_modules", "vendor", "bower_components"];

/// Top-level directories that may hold something the scan wants.
const TOP_DIRS: [&str; 6] = ["includes", "core", "modules", "themes", "profiles", "sites"];

/// Splits a relative path into its components, or `None` for a path that leaves the root
/// (`..`) or is empty. A leading `./` or `/` is ignored, as are empty components.
fn components(rel: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    for c in rel.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => out.push(c),
        }
    }
    if out.is_empty() { None } else { Some(out) }
}

/// Whether a walker should go into this directory (relative to the platform root,
/// `/`-separated). `""` (the root itself) is always walked.
pub fn descend(rel_dir: &str) -> bool {
    if rel_dir.trim_matches('/').is_empty() || rel_dir == "." {
        return true;
    }
    let Some(parts) = components(rel_dir) else {
        return false;
    };
    dir_allowed(&parts)
}

fn dir_allowed(dirs: &[&str]) -> bool {
    let Some(first) = dirs.first() else {
        return true;
    };
    if !TOP_DIRS.contains(first) {
        return false;
    }
    if dirs
        .iter()
        .any(|d| d.starts_with('.') || SKIPPED_DIRS.contains(d))
    {
        return false;
    }
    // sites/all holds the platform's own contributed code; sites/<site>/ is a site's
    // (its files, private files, settings and site-specific modules), not the platform's.
    if *first == "sites"
        && let Some(second) = dirs.get(1)
    {
        return *second == "all";
    }
    // includes/ only matters for bootstrap.inc, nothing below it.
    if *first == "includes" && dirs.len() > 1 {
        return false;
    }
    true
}

/// Whether the scan needs this file (path relative to the platform root, `/`-separated),
/// and whether it needs its contents.
pub fn wanted(rel_path: &str) -> Want {
    let Some(parts) = components(rel_path) else {
        return Want::No;
    };
    let Some((file, dirs)) = parts.split_last() else {
        return Want::No;
    };
    let joined = parts.join("/");
    if joined == D7_CORE_FILE || joined == D8_CORE_FILE {
        return Want::Contents;
    }
    if dirs.is_empty() || !dir_allowed(dirs) {
        return Want::No;
    }
    if file.ends_with(".info") || file.ends_with(".info.yml") || file.ends_with(".install") {
        return Want::Contents;
    }
    if file.ends_with(".po") && dirs.last() == Some(&"translations") && dirs.contains(&"profiles") {
        return Want::NameOnly;
    }
    Want::No
}

/// What a platform's codebase holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformScan {
    /// 7, 10, 11…
    pub drupal_major: u32,
    /// `7.98`, `10.3.1`.
    pub core_version: String,
    /// Core (`drupal`), profiles, modules and themes, sorted by (type, name), one per name
    /// and type.
    pub packages: Vec<Package>,
    /// What was skipped and why (an info file without a type, a package found twice…),
    /// for the task log. Never fatal.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error(
        "not a Drupal codebase: no includes/bootstrap.inc or core/lib/Drupal.php under the root"
    )]
    NotDrupal,
    #[error("{file} does not say which Drupal version it is: expected {expected}")]
    NoCoreVersion {
        file: &'static str,
        expected: &'static str,
    },
    #[error("Drupal {version} is not supported: berth hosts Drupal 7 and later")]
    Unsupported { version: String },
}

// ---------------------------------------------------------------------------------------
// Info files

/// What berth reads from a module's, theme's or profile's info file (Drupal 7 `.info` or
/// Drupal 8+ `.info.yml`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Drupal 8+ `type:` (`module`, `theme`, `profile`, `theme_engine`); Drupal 7 has none.
    pub info_type: Option<String>,
    /// As written; `VERSION` stands for core's version.
    pub version: Option<String>,
    /// Drupal 7 `core = 7.x`; Drupal 8 `core: 8.x`.
    pub core: Option<String>,
    /// Drupal 8.7.7+ `core_version_requirement: ^9 || ^10`.
    pub core_version_requirement: Option<String>,
    pub package: Option<String>,
    pub project: Option<String>,
    pub hidden: bool,
    /// Machine names only: `drupal:node (>=8.6)` → `node`.
    pub dependencies: Vec<String>,
    /// Drupal 8+ profiles: modules installed but not required (`install:`).
    pub install: Vec<String>,
    pub old_short_name: Option<String>,
}

/// Whether an info value means "true" the way Drupal reads it (`!empty($info['hidden'])`,
/// with `TRUE`/`FALSE`/`NULL` being PHP constants).
fn truthy(v: &str) -> bool {
    let v = v.trim();
    !(v.is_empty()
        || v == "0"
        || v.eq_ignore_ascii_case("false")
        || v.eq_ignore_ascii_case("null")
        || v == "~")
}

/// `project:module (>=1.0)` → `module`; empty for nonsense.
fn dependency_name(dep: &str) -> String {
    let d = dep.trim();
    let d = d.split(['(', ' ', '\t']).next().unwrap_or("");
    let d = d.rsplit(':').next().unwrap_or("");
    d.trim().to_string()
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Drupal 7's `stripslashes` on a quoted value.
fn stripslashes(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(if n == '0' { '\0' } else { n });
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `key` is a valid Drupal 7 info key: no `=`, `;`, and only balanced, non-nested
/// square brackets.
fn valid_ini_key(key: &str) -> bool {
    if key.is_empty() {
        return false;
    }
    let mut open = false;
    for c in key.chars() {
        match c {
            '=' | ';' => return false,
            '[' if open => return false,
            '[' => open = true,
            ']' if !open => return false,
            ']' => open = false,
            _ => {}
        }
    }
    !open
}

/// The key/value pairs of a Drupal 7 `.info` file, in order, as Drupal's
/// `drupal_parse_info_format()` reads them: `key = value`, values bare (to the end of the
/// line, trimmed), or in double or single quotes (which may span lines, with
/// backslash-escapes); lines starting with `;` are comments. Keys keep their brackets
/// (`dependencies[]`). A leading byte-order mark and CRLF line ends are fine.
pub fn parse_info_pairs(text: &str) -> Vec<(String, String)> {
    let text = strip_bom(text);
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let rest = &text[pos..];
        let line_end = rest.find('\n').map(|i| i + 1).unwrap_or(rest.len());
        let line = &rest[..line_end];
        let next = pos + line_end;
        let trimmed = line.trim_start();
        let Some(eq) = trimmed.find('=') else {
            pos = next;
            continue;
        };
        if trimmed.starts_with(';') {
            pos = next;
            continue;
        }
        let key = trimmed[..eq].trim();
        if !valid_ini_key(key) {
            pos = next;
            continue;
        }
        let after_eq = &trimmed[eq + 1..];
        let value_part = after_eq.trim_start_matches([' ', '\t']);
        // Offset of the value within `text`.
        let value_off =
            pos + (line.len() - trimmed.len()) + eq + 1 + (after_eq.len() - value_part.len());
        let quote = value_part
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'');
        if let Some(q) = quote {
            // Find the closing quote anywhere after (values may span lines); a quote right
            // after a backslash does not close it.
            let body_start = value_off + 1;
            let body = &text[body_start..];
            let mut close = None;
            let mut prev_backslash = false;
            for (i, c) in body.char_indices() {
                if c == q && !prev_backslash {
                    close = Some(i);
                    break;
                }
                prev_backslash = c == '\\' && !prev_backslash;
            }
            if let Some(ci) = close {
                let after = &body[ci + 1..];
                let tail_end = after.find('\n').map(|i| i + 1).unwrap_or(after.len());
                if after[..tail_end].trim().is_empty() {
                    out.push((key.to_string(), stripslashes(&body[..ci])));
                    pos = body_start + ci + 1 + tail_end;
                    continue;
                }
            }
        }
        // Bare value: to the end of the line.
        out.push((
            key.to_string(),
            line[line.len() - value_part.len()..].trim().to_string(),
        ));
        pos = next;
    }
    out
}

/// `dependencies[]` → (`dependencies`, true); `name` → (`name`, false).
fn ini_base(key: &str) -> (&str, bool) {
    match key.find('[') {
        Some(i) => (key[..i].trim(), true),
        None => (key, false),
    }
}

/// Reads a Drupal 7 `.info` file.
pub fn parse_info(text: &str) -> Info {
    let mut info = Info::default();
    for (key, value) in parse_info_pairs(text) {
        let (base, is_list) = ini_base(&key);
        if is_list {
            let dep = dependency_name(&value);
            match base {
                "dependencies" if !dep.is_empty() => info.dependencies.push(dep),
                _ => {}
            }
            continue;
        }
        let v = Some(value.clone());
        match base {
            "name" => info.name = v,
            "description" => info.description = v,
            "version" => info.version = v,
            "core" => info.core = v,
            "package" => info.package = v,
            "project" => info.project = v,
            "hidden" => info.hidden = truthy(&value),
            "old_short_name" => info.old_short_name = v,
            _ => {}
        }
    }
    info
}

/// One scalar of the YAML subset in info files: plain, `'single'` (`''` escapes a quote)
/// or `"double"` (backslash escapes); a ` #` starts a comment after a plain scalar.
fn yaml_scalar(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(body) = raw.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    out.push('\'');
                } else {
                    return out;
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    if let Some(body) = raw.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return out,
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(o) => out.push(o),
                    None => {}
                },
                c => out.push(c),
            }
        }
        return out;
    }
    let mut end = raw.len();
    for (i, _) in raw.match_indices('#') {
        if i == 0 || raw[..i].ends_with([' ', '\t']) {
            end = i;
            break;
        }
    }
    raw[..end].trim().to_string()
}

/// `[a, 'b', c]` → the items.
fn yaml_flow_list(raw: &str) -> Vec<String> {
    let inner = raw.trim().trim_start_matches('[');
    let inner = match inner.rfind(']') {
        Some(i) => &inner[..i],
        None => inner,
    };
    inner
        .split(',')
        .map(yaml_scalar)
        .filter(|s| !s.is_empty())
        .collect()
}

/// The top-level keys of a Drupal 8+ `.info.yml` file: each a scalar or a list (block
/// `- item` lines, or a flow `[a, b]`). Nested mappings (`regions:`, `libraries-override:`)
/// are skipped; `>` and `|` block scalars are folded to one line. A leading byte-order mark,
/// CRLF line ends, comments and `---` are fine.
pub fn parse_info_yml_map(text: &str) -> BTreeMap<String, YamlValue> {
    let text = strip_bom(text);
    let mut out: BTreeMap<String, YamlValue> = BTreeMap::new();
    let mut current: Option<String> = None;
    // For block scalars: the key being collected.
    let mut block: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let content = line.trim();
        if content.is_empty() {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if let Some(key) = &block {
            if indented {
                if let Some(YamlValue::Scalar(s)) = out.get_mut(key) {
                    if !s.is_empty() {
                        s.push(' ');
                    }
                    s.push_str(content);
                }
                continue;
            }
            block = None;
        }
        if content.starts_with('#') || content == "---" || content == "..." {
            continue;
        }
        if let Some(item) = content.strip_prefix('-') {
            if !(item.is_empty() || item.starts_with([' ', '\t'])) {
                continue;
            }
            if let Some(key) = &current {
                let v = yaml_scalar(item);
                if let Some(YamlValue::List(l)) = out.get_mut(key)
                    && !v.is_empty()
                {
                    l.push(v);
                }
            }
            continue;
        }
        if indented {
            // Inside a nested mapping: not ours.
            continue;
        }
        current = None;
        let Some(colon) = find_yaml_colon(content) else {
            continue;
        };
        let key = yaml_scalar(&content[..colon]);
        if key.is_empty() {
            continue;
        }
        let raw = content[colon + 1..].trim();
        if raw.is_empty() || raw.starts_with('#') {
            // A list or a mapping follows.
            out.insert(key.clone(), YamlValue::List(Vec::new()));
            current = Some(key);
        } else if raw.starts_with('[') {
            out.insert(key, YamlValue::List(yaml_flow_list(raw)));
        } else if raw.starts_with('|') || raw.starts_with('>') {
            out.insert(key.clone(), YamlValue::Scalar(String::new()));
            block = Some(key);
        } else {
            out.insert(key, YamlValue::Scalar(yaml_scalar(raw)));
        }
    }
    out
}

/// The `:` ending a YAML key: followed by a space or the end, outside quotes.
fn find_yaml_colon(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let bytes: Vec<(usize, char)> = s.char_indices().collect();
    for (n, &(i, c)) in bytes.iter().enumerate() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == '\'' || c == '"') && n == 0 => quote = Some(c),
            None if c == ':' => {
                let next = bytes.get(n + 1).map(|&(_, c)| c);
                if matches!(next, None | Some(' ') | Some('\t')) {
                    return Some(i);
                }
            }
            None => {}
        }
    }
    None
}

/// A top-level value of an `.info.yml` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum YamlValue {
    Scalar(String),
    List(Vec<String>),
}

/// Reads a Drupal 8+ `.info.yml` file.
pub fn parse_info_yml(text: &str) -> Info {
    let map = parse_info_yml_map(text);
    let scalar = |k: &str| match map.get(k) {
        Some(YamlValue::Scalar(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let list = |k: &str| match map.get(k) {
        Some(YamlValue::List(l)) => l
            .iter()
            .map(|d| dependency_name(d))
            .filter(|d| !d.is_empty())
            .collect(),
        _ => Vec::new(),
    };
    Info {
        name: scalar("name"),
        description: scalar("description"),
        info_type: scalar("type"),
        version: scalar("version"),
        core: scalar("core"),
        core_version_requirement: scalar("core_version_requirement"),
        package: scalar("package"),
        project: scalar("project"),
        hidden: scalar("hidden").is_some_and(|h| truthy(&h)),
        dependencies: list("dependencies"),
        install: list("install"),
        old_short_name: scalar("old_short_name"),
    }
}

// ---------------------------------------------------------------------------------------
// PHP: core's version and schema versions

/// Blanks out PHP comments and the contents of string literals (including heredocs and
/// nowdocs), keeping everything else byte for byte, so that searching what is left for
/// `function x(` finds only real declarations.
fn php_code_only(src: &str) -> Vec<u8> {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for o in out.iter_mut().take(to.min(b.len())).skip(from) {
            if *o != b'\n' {
                *o = b' ';
            }
        }
    };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if (c == b'/' && next == Some(b'/')) || (c == b'#' && next != Some(b'[')) {
            let end = b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if c == b'/' && next == Some(b'*') {
            let end = find(b, i + 2, b"*/").map_or(b.len(), |p| p + 2);
            blank(&mut out, i, end);
            i = end;
        } else if c == b'\'' || c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != c {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            blank(&mut out, i + 1, end.saturating_sub(1).max(i + 1));
            i = end;
        } else if c == b'<' && b[i..].starts_with(b"<<<") {
            // <<<ID, <<<"ID", <<<'ID'
            let mut j = i + 3;
            while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
                j += 1;
            }
            if j < b.len() && (b[j] == b'"' || b[j] == b'\'') {
                j += 1;
            }
            let id_start = j;
            while j < b.len() && is_ident(b[j]) {
                j += 1;
            }
            let id = &b[id_start..j];
            if id.is_empty() {
                i += 3;
                continue;
            }
            // The body starts on the next line and ends at a line starting (after
            // whitespace) with the identifier followed by a non-identifier byte.
            let mut line = b[j..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| j + p + 1);
            let mut end = b.len();
            while line < b.len() {
                let mut k = line;
                while k < b.len() && (b[k] == b' ' || b[k] == b'\t') {
                    k += 1;
                }
                if b[k..].starts_with(id) && !b.get(k + id.len()).is_some_and(|&x| is_ident(x)) {
                    end = k;
                    break;
                }
                line = b[line..]
                    .iter()
                    .position(|&x| x == b'\n')
                    .map_or(b.len(), |p| line + p + 1);
            }
            blank(&mut out, j, end);
            i = if end < b.len() { end + id.len() } else { end };
        } else {
            i += 1;
        }
    }
    out
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    if from >= hay.len() || needle.is_empty() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80
}

/// The highest `N` of the `<module>_update_N()` functions declared in a module's `.install`
/// file, as Drupal finds its schema versions; `None` without any. Other modules' update
/// functions, `<module>_update_last_removed()` and anything in comments or strings do not
/// count.
pub fn schema_version(install_php: &str, module: &str) -> Option<i64> {
    if module.is_empty() {
        return None;
    }
    let code = php_code_only(install_php);
    let prefix = format!("{}_update_", module.to_ascii_lowercase());
    let mut best: Option<i64> = None;
    let mut i = 0;
    while i < code.len() {
        if !is_ident(code[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < code.len() && is_ident(code[i]) {
            i += 1;
        }
        if !code[start..i].eq_ignore_ascii_case(b"function") {
            continue;
        }
        let mut j = i;
        while j < code.len() && (code[j].is_ascii_whitespace() || code[j] == b'&') {
            j += 1;
        }
        let name_start = j;
        while j < code.len() && is_ident(code[j]) {
            j += 1;
        }
        let name = code[name_start..j].to_ascii_lowercase();
        if let Some(digits) = name.strip_prefix(prefix.as_bytes())
            && !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && let Some(n) = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse::<i64>().ok())
        {
            best = Some(best.map_or(n, |b| b.max(n)));
        }
        i = j.max(i);
    }
    best
}

/// The first quoted PHP string starting at `s` (after whitespace), unescaped naively.
fn php_quoted(s: &str) -> Option<String> {
    let s = s.trim_start();
    let q = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &s[1..];
    let end = body.find(q)?;
    Some(body[..end].to_string())
}

/// Drupal 7's version from `includes/bootstrap.inc`: `define('VERSION', '7.98');`.
pub fn core_version_d7(bootstrap_inc: &str) -> Option<String> {
    let code = String::from_utf8_lossy(&php_code_only_keep_strings(bootstrap_inc)).into_owned();
    for (i, _) in code.match_indices("define") {
        let rest = code[i + "define".len()..].trim_start();
        let Some(rest) = rest.strip_prefix('(') else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(name) = php_quoted(rest) else {
            continue;
        };
        if name != "VERSION" {
            continue;
        }
        // Skip past the name's closing quote, then the comma.
        let after_name = &rest[name.len() + 2..];
        let Some(after_comma) = after_name.trim_start().strip_prefix(',') else {
            continue;
        };
        if let Some(v) = php_quoted(after_comma).filter(|v| !v.trim().is_empty()) {
            return Some(v.trim().to_string());
        }
    }
    None
}

/// Drupal 8+'s version from `core/lib/Drupal.php`: `const VERSION = '10.3.1';`.
pub fn core_version_d8(drupal_php: &str) -> Option<String> {
    let code = String::from_utf8_lossy(&php_code_only_keep_strings(drupal_php)).into_owned();
    for (i, _) in code.match_indices("const") {
        if i > 0 && code.as_bytes().get(i - 1).is_some_and(|&c| is_ident(c)) {
            continue;
        }
        let rest = &code[i + "const".len()..];
        if !rest.starts_with([' ', '\t', '\n', '\r']) {
            continue;
        }
        let rest = rest.trim_start();
        // PHP 8.3 allows a type: `const string VERSION = ...`.
        let rest = rest.strip_prefix("string").map_or(rest, |r| r.trim_start());
        let Some(rest) = rest.strip_prefix("VERSION") else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        if let Some(v) = php_quoted(rest).filter(|v| !v.trim().is_empty()) {
            return Some(v.trim().to_string());
        }
    }
    None
}

/// Like [`php_code_only`] but only comments are blanked (the version is a string).
fn php_code_only_keep_strings(src: &str) -> Vec<u8> {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if (c == b'/' && next == Some(b'/')) || (c == b'#' && next != Some(b'[')) {
            let end = b[i..]
                .iter()
                .position(|&x| x == b'\n')
                .map_or(b.len(), |p| i + p);
            out[i..end].fill(b' ');
            i = end;
        } else if c == b'/' && next == Some(b'*') {
            let end = find(b, i + 2, b"*/").map_or(b.len(), |p| p + 2);
            for o in &mut out[i..end] {
                if *o != b'\n' {
                    *o = b' ';
                }
            }
            i = end;
        } else if c == b'\'' || c == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != c {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            i = (j + 1).min(b.len());
        } else {
            i += 1;
        }
    }
    out
}

/// The major version in `10.3.1`, `7.98`, `11.x-dev`.
pub fn major_of(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The language of a translation file: `de.po` → `de`; `standard-7.x-1.0.fr.po` → `fr`.
pub fn po_language(file_name: &str) -> Option<String> {
    let stem = file_name.strip_suffix(".po")?;
    let lang = stem.rsplit('.').next()?;
    let ok = !lang.is_empty()
        && lang.len() <= 16
        && lang
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '@');
    ok.then(|| lang.to_string())
}

/// Whether `name` can be a Drupal machine name (what PHP allows in a function name prefix).
fn machine_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

// ---------------------------------------------------------------------------------------
// The scan

/// A package found, before duplicates are dropped: the lower the rank, the more it counts.
struct Found {
    rank: u8,
    package: Package,
}

/// Where a Drupal 7 info file sits: its type and rank, or `None` if it is not where Drupal
/// looks (a library's `.info`, say).
fn d7_place(dirs: &[&str], name: &str) -> Option<(PackageType, u8)> {
    match dirs {
        ["profiles", p] if *p == name => Some((PackageType::Profile, 0)),
        ["modules", ..] => Some((PackageType::Module, 2)),
        ["themes", ..] => Some((PackageType::Theme, 2)),
        ["sites", "all", "modules", ..] => Some((PackageType::Module, 0)),
        ["sites", "all", "themes", ..] => Some((PackageType::Theme, 0)),
        ["profiles", _, "modules", ..] => Some((PackageType::Module, 1)),
        ["profiles", _, "themes", ..] => Some((PackageType::Theme, 1)),
        _ => None,
    }
}

/// The rank of a Drupal 8+ extension by where it sits (its type comes from the info file).
fn d8_rank(dirs: &[&str], ty: PackageType) -> u8 {
    match dirs.first() {
        Some(&"core") => 3,
        Some(&"sites") => 1,
        Some(&"profiles") if ty != PackageType::Profile => 2,
        _ => 0,
    }
}

/// Scans a platform's files: `(path relative to the root, contents)` for each file
/// [`wanted`] asked for (contents empty for [`Want::NameOnly`]). Files the scan does not
/// need are ignored, so passing more is harmless.
///
/// When the same package (type and name) is found twice, the one Drupal would use wins:
/// Drupal 7: `sites/all/` over `profiles/<p>/` over core; Drupal 8+: root `modules/`,
/// `themes/`, `profiles/` over `sites/all/` over `profiles/<p>/` over `core/`; the others
/// are dropped with a warning. (A profile's own modules only count for sites on that
/// profile in Drupal; the platform list is by name, so they rank below shared code.)
pub fn scan(files: &[(String, String)]) -> Result<PlatformScan, ScanError> {
    let mut by_path: BTreeMap<String, &str> = BTreeMap::new();
    for (path, contents) in files {
        if let Some(parts) = components(path) {
            by_path.entry(parts.join("/")).or_insert(contents.as_str());
        }
    }

    let (core_version, d7) = if let Some(text) = by_path.get(D8_CORE_FILE) {
        let v = core_version_d8(text).ok_or(ScanError::NoCoreVersion {
            file: D8_CORE_FILE,
            expected: "const VERSION = '10.3.1';",
        })?;
        (v, false)
    } else if let Some(text) = by_path.get(D7_CORE_FILE) {
        let v = core_version_d7(text).ok_or(ScanError::NoCoreVersion {
            file: D7_CORE_FILE,
            expected: "define('VERSION', '7.98');",
        })?;
        (v, true)
    } else {
        return Err(ScanError::NotDrupal);
    };
    let drupal_major = match major_of(&core_version) {
        Some(m) if m >= 7 => m,
        _ => {
            return Err(ScanError::Unsupported {
                version: core_version,
            });
        }
    };

    let mut warnings = Vec::new();
    let mut found: Vec<Found> = Vec::new();
    for (path, text) in &by_path {
        let ext = if d7 { ".info" } else { ".info.yml" };
        let Some(file_stem) = path.strip_suffix(ext) else {
            continue;
        };
        let parts: Vec<&str> = path.split('/').collect();
        let Some((file, dirs)) = parts.split_last() else {
            continue;
        };
        if wanted(path) != Want::Contents {
            continue;
        }
        let name = file.strip_suffix(ext).unwrap_or(file);
        if !machine_name_ok(name) {
            warnings.push(format!("{path}: `{name}` is not a machine name; skipped"));
            continue;
        }
        let dir = dirs.join("/");
        let (info, ty, rank) = if d7 {
            let Some((ty, rank)) = d7_place(dirs, name) else {
                continue;
            };
            (parse_info(text), ty, rank)
        } else {
            let info = parse_info_yml(text);
            let ty = match info.info_type.as_deref() {
                Some("module") => PackageType::Module,
                Some("theme") => PackageType::Theme,
                Some("profile") => PackageType::Profile,
                Some("theme_engine") => continue,
                Some(other) => {
                    warnings.push(format!("{path}: unknown type `{other}`; skipped"));
                    continue;
                }
                None => {
                    warnings.push(format!(
                        "{path}: no `type:` (module, theme or profile); skipped"
                    ));
                    continue;
                }
            };
            let rank = d8_rank(dirs, ty);
            (info, ty, rank)
        };
        if info.hidden {
            continue;
        }
        let version = info.version.map(|v| {
            if v == "VERSION" {
                core_version.clone()
            } else {
                v
            }
        });
        let install_path = format!("{file_stem}.install");
        let schema = by_path
            .get(install_path.as_str())
            .and_then(|php| schema_version(php, name));
        // Drupal 8+ installs a module (a profile is one) without update functions at its
        // minimum schema version, not at none.
        let schema = match ty {
            PackageType::Module | PackageType::Profile if !d7 => {
                schema.or(Some(D8_MINIMUM_SCHEMA_VERSION))
            }
            _ => schema,
        };
        let mut languages = Vec::new();
        if ty == PackageType::Profile {
            let prefix = format!("{dir}/translations/");
            let mut langs = BTreeSet::new();
            for p in by_path.keys() {
                if let Some(f) = p.strip_prefix(&prefix)
                    && !f.contains('/')
                    && let Some(l) = po_language(f)
                    && l != "en"
                {
                    langs.insert(l);
                }
            }
            languages.push("en".to_string());
            languages.extend(langs);
        }
        found.push(Found {
            rank,
            package: Package {
                name: name.to_string(),
                package_type: ty,
                title: info.name,
                version,
                schema_version: schema,
                path: dir,
                languages,
                old_short_name: if ty == PackageType::Profile {
                    info.old_short_name
                } else {
                    None
                },
                enabled: None,
            },
        });
    }

    found.sort_by(|a, b| {
        (
            a.package.package_type,
            &a.package.name,
            a.rank,
            &a.package.path,
        )
            .cmp(&(
                b.package.package_type,
                &b.package.name,
                b.rank,
                &b.package.path,
            ))
    });
    let mut packages = vec![Package {
        name: "drupal".to_string(),
        package_type: PackageType::Core,
        title: Some("Drupal".to_string()),
        version: Some(core_version.clone()),
        schema_version: None,
        path: String::new(),
        languages: Vec::new(),
        old_short_name: None,
        enabled: None,
    }];
    for f in found {
        if let Some(kept) = packages
            .last()
            .filter(|k| k.package_type == f.package.package_type && k.name == f.package.name)
        {
            warnings.push(format!(
                "{} `{}` is in both {} and {}: {} is used",
                f.package.package_type.as_str(),
                f.package.name,
                kept.path,
                f.package.path,
                kept.path
            ));
            continue;
        }
        packages.push(f.package);
    }
    Ok(PlatformScan {
        drupal_major,
        core_version,
        packages,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(p, c)| (p.to_string(), c.to_string()))
            .collect()
    }

    fn find<'a>(scan: &'a PlatformScan, ty: PackageType, name: &str) -> &'a Package {
        scan.packages
            .iter()
            .find(|p| p.package_type == ty && p.name == name)
            .unwrap_or_else(|| panic!("no {ty:?} {name} in {:#?}", scan.packages))
    }

    #[test]
    fn wanted_picks_info_install_core_and_translations() {
        assert_eq!(wanted("includes/bootstrap.inc"), Want::Contents);
        assert_eq!(wanted("core/lib/Drupal.php"), Want::Contents);
        assert_eq!(wanted("./core/lib/Drupal.php"), Want::Contents);
        assert_eq!(wanted("sites/all/modules/views/views.info"), Want::Contents);
        assert_eq!(
            wanted("sites/all/modules/views/views.install"),
            Want::Contents
        );
        assert_eq!(
            wanted("modules/contrib/token/token.info.yml"),
            Want::Contents
        );
        assert_eq!(
            wanted("profiles/standard/translations/de.po"),
            Want::NameOnly
        );
        assert_eq!(
            wanted("core/profiles/standard/translations/de.po"),
            Want::NameOnly
        );
        for no in [
            "index.php",
            "includes/common.inc",
            "sites/all/modules/views/views.module",
            "modules/system/tests/foo/foo.info",
            "sites/default/settings.php",
            "sites/example.com/modules/x/x.info",
            "sites/default/files/x.info",
            "vendor/foo/bar.info.yml",
            "core/node_modules/x/x.info.yml",
            "modules/.git/x.info",
            "libraries/x/x.info",
            "modules/../etc/x.info",
            "translations/de.po",
            "",
            "/",
        ] {
            assert_eq!(wanted(no), Want::No, "{no}");
        }
    }

    #[test]
    fn descend_prunes_what_the_scan_never_needs() {
        for yes in [
            "",
            "sites",
            "sites/all",
            "sites/all/modules",
            "core",
            "core/modules/node",
            "profiles/standard",
        ] {
            assert!(descend(yes), "{yes}");
        }
        for no in [
            ".git",
            "vendor",
            "node_modules",
            "sites/default",
            "sites/default/files",
            "sites/example.com/private",
            "core/modules/system/tests",
            "modules/contrib/x/node_modules",
            "libraries",
            "includes/database",
            "..",
        ] {
            assert!(!descend(no), "{no}");
        }
    }

    #[test]
    fn d7_info_format_like_drupal_reads_it() {
        let text = "\u{feff}; $Id$\r\nname = Views\r\ndescription = \"Create = customized lists; and queries\"\r\n\
                    package = 'Views'\r\ncore = 7.x\r\ndependencies[] = ctools\r\ndependencies[] = \"ctools (>=1.0)\"\r\n\
                    dependencies[] = system (>7.10)\r\n  version = \"7.x-3.29\"   \r\nhidden = FALSE\r\n\
                    broken line without equals\r\nfiles[] = views.module\r\n";
        let info = parse_info(text);
        assert_eq!(info.name.as_deref(), Some("Views"));
        assert_eq!(
            info.description.as_deref(),
            Some("Create = customized lists; and queries")
        );
        assert_eq!(info.package.as_deref(), Some("Views"));
        assert_eq!(info.core.as_deref(), Some("7.x"));
        assert_eq!(info.version.as_deref(), Some("7.x-3.29"));
        assert_eq!(info.dependencies, ["ctools", "ctools", "system"]);
        assert!(!info.hidden);
        assert!(parse_info("hidden = TRUE\n").hidden);
        assert!(parse_info("hidden = 1").hidden);
        assert!(!parse_info("hidden = 0").hidden);
        assert!(!parse_info("; hidden = TRUE").hidden);
    }

    #[test]
    fn d7_quoted_values_may_span_lines_and_escape_quotes() {
        let info = parse_info("description = \"Line one\nline \\\"two\\\"\"\nname = X\n");
        assert_eq!(info.description.as_deref(), Some("Line one\nline \"two\""));
        assert_eq!(info.name.as_deref(), Some("X"));
        // An unterminated quote is read as a bare value.
        let info = parse_info("name = \"Unclosed\nversion = 1\n");
        assert_eq!(info.name.as_deref(), Some("\"Unclosed"));
        assert_eq!(info.version.as_deref(), Some("1"));
        // Something after the closing quote: bare value, quotes and all.
        let info = parse_info("name = \"A\" b\n");
        assert_eq!(info.name.as_deref(), Some("\"A\" b"));
    }

    #[test]
    fn d8_info_yml_subset() {
        let text = "\u{feff}name: 'Token'\r\ntype: module\r\ndescription: >\r\n  Provides a user interface\r\n  for tokens.\r\n\
                    # a comment\r\ncore_version_requirement: ^9.2 || ^10\r\ndependencies:\r\n  - drupal:system (>=9.2)\r\n\
                    \x20 - 'token:token_extra'\r\n# Information added by Drupal.org packaging script\r\nversion: '8.x-1.14' # tag\r\n\
                    project: \"token\"\r\nregions:\r\n  header: Header\r\n  name: Not the name\r\nhidden: false\r\n";
        let info = parse_info_yml(text);
        assert_eq!(info.name.as_deref(), Some("Token"));
        assert_eq!(info.info_type.as_deref(), Some("module"));
        assert_eq!(
            info.description.as_deref(),
            Some("Provides a user interface for tokens.")
        );
        assert_eq!(
            info.core_version_requirement.as_deref(),
            Some("^9.2 || ^10")
        );
        assert_eq!(info.dependencies, ["system", "token_extra"]);
        assert_eq!(info.version.as_deref(), Some("8.x-1.14"));
        assert_eq!(info.project.as_deref(), Some("token"));
        assert!(!info.hidden);
        let info = parse_info_yml(
            "type: profile\nname: It's\ninstall: [node, 'drupal:user']\nhidden: TRUE\nold_short_name: 'berth_legacy'\n",
        );
        assert_eq!(info.install, ["node", "user"]);
        assert!(info.hidden);
        assert_eq!(info.old_short_name.as_deref(), Some("berth_legacy"));
        let info = parse_info_yml(
            "name: 'It''s: fine' # c\nversion: 1.0#not-a-comment\ndependencies:\n- a\n- b\n",
        );
        assert_eq!(info.name.as_deref(), Some("It's: fine"));
        assert_eq!(info.version.as_deref(), Some("1.0#not-a-comment"));
        assert_eq!(info.dependencies, ["a", "b"]);
    }

    #[test]
    fn schema_version_is_the_highest_own_update() {
        let php = r#"<?php
/**
 * Implements hook_update_N(): function views_update_9999() is not here.
 */
function views_update_7301() {}
function views_update_7302 () {}
// function views_update_8000() {}
# function views_update_8001() {}
/* function views_update_8002() {} */
function views_ui_update_7400() {}
function myviews_update_7500() {}
function views_update_last_removed() { return 6000; }
function views_update_7303x() {}
function &views_update_7200() {}
$s = 'function views_update_8003() {}';
$h = <<<EOT
don't function views_update_8004() {}
EOT;
function views_update_7290() {}
"#;
        assert_eq!(schema_version(php, "views"), Some(7302));
        assert_eq!(schema_version(php, "views_ui"), Some(7400));
        assert_eq!(
            schema_version("<?php\nfunction x_install() {}\n", "x"),
            None
        );
        assert_eq!(schema_version("", "x"), None);
        assert_eq!(
            schema_version("function x_update_99999999999999999999999() {}", "x"),
            None
        );
        assert_eq!(
            schema_version("\r\nfunction\r\nnode_update_7015(){}", "node"),
            Some(7015)
        );
    }

    #[test]
    fn core_versions() {
        assert_eq!(
            core_version_d7(
                "<?php\n/**\n * The current system version.\n */\ndefine('VERSION', '7.98');\n"
            )
            .as_deref(),
            Some("7.98")
        );
        assert_eq!(
            core_version_d7("// define('VERSION', '7.1');\ndefine( \"VERSION\" , \"7.99-dev\" );")
                .as_deref(),
            Some("7.99-dev")
        );
        assert_eq!(
            core_version_d7("define('DRUPAL_CORE_COMPATIBILITY', '7.x');"),
            None
        );
        assert_eq!(
            core_version_d8("class Drupal {\n  const VERSION = '10.3.1';\n").as_deref(),
            Some("10.3.1")
        );
        assert_eq!(
            core_version_d8("  const string VERSION = \"11.1.0\";").as_deref(),
            Some("11.1.0")
        );
        assert_eq!(core_version_d8("const CORE_COMPATIBILITY = '8.x';"), None);
        assert_eq!(major_of("11.x-dev"), Some(11));
        assert_eq!(major_of("x"), None);
    }

    #[test]
    fn po_languages() {
        assert_eq!(po_language("de.po").as_deref(), Some("de"));
        assert_eq!(
            po_language("standard-7.x.pt-br.po").as_deref(),
            Some("pt-br")
        );
        assert_eq!(po_language("de.pot"), None);
        assert_eq!(po_language(".po"), None);
        assert_eq!(po_language("x.d e.po"), None);
    }

    fn d7_platform() -> Vec<(String, String)> {
        files(&[
            (
                "includes/bootstrap.inc",
                "<?php\ndefine('VERSION', '7.98');\n",
            ),
            (
                "modules/system/system.info",
                "name = System\ncore = 7.x\nrequired = TRUE\nversion = VERSION\n",
            ),
            (
                "modules/system/system.install",
                "<?php\nfunction system_update_7080() {}\nfunction system_update_7085() {}\n",
            ),
            (
                "modules/node/node.info",
                "name = Node\nversion = \"7.98\"\n",
            ),
            (
                "modules/simpletest/tests/hidden_test.info",
                "name = T\nhidden = TRUE\n",
            ),
            (
                "modules/field/modules/text/text.info",
                "name = Text\nversion = VERSION\n",
            ),
            ("modules/hid/hid.info", "name = Hid\nhidden = TRUE\n"),
            (
                "themes/bartik/bartik.info",
                "name = Bartik\nversion = VERSION\n",
            ),
            (
                "sites/all/modules/views/views.info",
                "name = Views\nversion = \"7.x-3.29\"\n",
            ),
            (
                "sites/all/modules/views/views.install",
                "<?php\nfunction views_update_7301() {}\n",
            ),
            (
                "sites/all/modules/views/views_ui.info",
                "name = Views UI\nversion = \"7.x-3.29\"\n",
            ),
            (
                "profiles/standard/modules/views/views.info",
                "name = Views\nversion = \"7.x-3.1\"\n",
            ),
            ("sites/all/libraries/foo/foo.info", "name = Not a module\n"),
            (
                "profiles/standard/standard.info",
                "name = Standard\nversion = VERSION\n",
            ),
            ("profiles/standard/translations/de.po", ""),
            ("profiles/standard/translations/drupal-7.98.fr.po", ""),
            ("profiles/standard/translations/en.po", ""),
            (
                "profiles/minimal/minimal.info",
                "name = Minimal\nold_short_name = default\n",
            ),
            (
                "profiles/testing/testing.info",
                "name = Testing\nhidden = TRUE\n",
            ),
            (
                "modules/node/node.info.yml",
                "name: Wrong format\ntype: module\n",
            ),
        ])
    }

    #[test]
    fn scans_a_drupal7_platform() {
        let scan = scan(&d7_platform()).expect("scan");
        assert_eq!(scan.drupal_major, 7);
        assert_eq!(scan.core_version, "7.98");
        let names: Vec<(PackageType, &str)> = scan
            .packages
            .iter()
            .map(|p| (p.package_type, p.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (PackageType::Core, "drupal"),
                (PackageType::Profile, "minimal"),
                (PackageType::Profile, "standard"),
                (PackageType::Module, "node"),
                (PackageType::Module, "system"),
                (PackageType::Module, "text"),
                (PackageType::Module, "views"),
                (PackageType::Module, "views_ui"),
                (PackageType::Theme, "bartik"),
            ]
        );
        let system = find(&scan, PackageType::Module, "system");
        assert_eq!(system.version.as_deref(), Some("7.98"));
        assert_eq!(system.schema_version, Some(7085));
        assert_eq!(system.path, "modules/system");
        let views = find(&scan, PackageType::Module, "views");
        assert_eq!(views.path, "sites/all/modules/views");
        assert_eq!(views.version.as_deref(), Some("7.x-3.29"));
        assert_eq!(views.schema_version, Some(7301));
        assert_eq!(views.title.as_deref(), Some("Views"));
        assert_eq!(
            find(&scan, PackageType::Module, "views_ui").schema_version,
            None
        );
        let standard = find(&scan, PackageType::Profile, "standard");
        assert_eq!(standard.languages, ["en", "de", "fr"]);
        assert_eq!(standard.path, "profiles/standard");
        let minimal = find(&scan, PackageType::Profile, "minimal");
        assert_eq!(minimal.languages, ["en"]);
        assert_eq!(minimal.old_short_name.as_deref(), Some("default"));
        assert_eq!(minimal.version, None);
        assert_eq!(scan.packages[0].version.as_deref(), Some("7.98"));
        assert!(
            scan.warnings
                .iter()
                .any(|w| w.contains("profiles/standard/modules/views")),
            "{:?}",
            scan.warnings
        );
    }

    #[test]
    fn scans_a_drupal10_platform() {
        let scan = scan(&files(&[
            (
                "core/lib/Drupal.php",
                "<?php\nclass Drupal {\n  const VERSION = '10.3.1';\n}\n",
            ),
            (
                "core/modules/system/system.info.yml",
                "name: System\ntype: module\nversion: VERSION\n",
            ),
            (
                "core/modules/system/system.install",
                "<?php\nfunction system_update_10201() {}\n",
            ),
            (
                "core/modules/node/node.info.yml",
                "name: Node\ntype: module\n",
            ),
            ("core/modules/node/node.info", "name = Wrong format\n"),
            (
                "core/themes/olivero/olivero.info.yml",
                "name: Olivero\ntype: theme\nversion: VERSION\n",
            ),
            (
                "core/themes/engines/twig/twig.info.yml",
                "name: Twig\ntype: theme_engine\n",
            ),
            (
                "core/profiles/standard/standard.info.yml",
                "name: Standard\ntype: profile\n",
            ),
            ("core/profiles/standard/translations/de.po", ""),
            (
                "core/profiles/testing/testing.info.yml",
                "name: Testing\ntype: profile\nhidden: true\n",
            ),
            (
                "profiles/berth_custom/berth_custom.info.yml",
                "name: Custom\ntype: profile\nold_short_name: berth_legacy\n",
            ),
            (
                "modules/contrib/token/token.info.yml",
                "name: Token\ntype: module\nversion: '8.x-1.14'\n",
            ),
            (
                "modules/contrib/token/token.install",
                "<?php\nfunction token_update_8001() {}\n",
            ),
            ("modules/contrib/notype/notype.info.yml", "name: No type\n"),
            (
                "core/modules/token/token.info.yml",
                "name: Core token\ntype: module\n",
            ),
        ]))
        .expect("scan");
        assert_eq!(scan.drupal_major, 10);
        let names: Vec<&str> = scan.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "drupal",
                "berth_custom",
                "standard",
                "node",
                "system",
                "token",
                "olivero"
            ]
        );
        assert_eq!(
            find(&scan, PackageType::Module, "system")
                .version
                .as_deref(),
            Some("10.3.1")
        );
        assert_eq!(
            find(&scan, PackageType::Module, "system").schema_version,
            Some(10201)
        );
        assert_eq!(
            find(&scan, PackageType::Module, "token").path,
            "modules/contrib/token"
        );
        assert_eq!(
            find(&scan, PackageType::Profile, "standard").languages,
            ["en", "de"]
        );
        assert_eq!(
            find(&scan, PackageType::Profile, "berth_custom")
                .old_short_name
                .as_deref(),
            Some("berth_legacy")
        );
        // A module or profile without update functions is at Drupal's minimum, not none;
        // a theme has no schema.
        assert_eq!(
            find(&scan, PackageType::Module, "node").schema_version,
            Some(D8_MINIMUM_SCHEMA_VERSION)
        );
        assert_eq!(
            find(&scan, PackageType::Profile, "standard").schema_version,
            Some(8000)
        );
        assert_eq!(
            find(&scan, PackageType::Theme, "olivero").schema_version,
            None
        );
        assert!(
            scan.warnings
                .iter()
                .any(|w| w.contains("notype") && w.contains("type")),
            "{:?}",
            scan.warnings
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let err = scan(&files(&[("index.php", "<?php")])).unwrap_err();
        assert_eq!(err, ScanError::NotDrupal);
        assert!(
            err.to_string()
                .contains("no includes/bootstrap.inc or core/lib/Drupal.php")
        );
        let err = scan(&files(&[("includes/bootstrap.inc", "<?php\n")])).unwrap_err();
        assert!(err.to_string().contains("define('VERSION'"), "{err}");
        let err = scan(&files(&[(
            "core/lib/Drupal.php",
            "<?php const VERSION = 'x';",
        )]))
        .unwrap_err();
        assert!(
            err.to_string().contains("Drupal x is not supported"),
            "{err}"
        );
        let err = scan(&files(&[(
            "includes/bootstrap.inc",
            "define('VERSION', '6.38');",
        )]))
        .unwrap_err();
        assert!(matches!(err, ScanError::Unsupported { .. }));
    }

    #[test]
    fn no_panics_on_odd_input() {
        let odd = [
            "",
            "=",
            "\"",
            "'",
            "[",
            "]=",
            "a[=b",
            "\u{feff}",
            "é=\"ü",
            "name = \"",
            "name = '\\",
            "<<<",
            "<<<X\n",
            "<<<'X'\nfoo",
            "/*",
            "//",
            "#",
            "'\\",
            "\"\\",
            "function",
            "function ",
            "-",
            "- ",
            ":",
            "a:",
            "a: [",
            "a: '",
            "a: \"\\",
            "a: |",
            "\r",
            "\r\n\r\n",
            "const VERSION =",
            "define(",
            "define('VERSION'",
            "define('VERSION',",
            "const",
            "ü:ü",
            "x_update_",
        ];
        for text in odd {
            let _ = parse_info(text);
            let _ = parse_info_yml(text);
            let _ = schema_version(text, "x");
            let _ = core_version_d7(text);
            let _ = core_version_d8(text);
            let _ = po_language(text);
            let _ = wanted(text);
            let _ = descend(text);
            for file in [
                "includes/bootstrap.inc",
                "core/lib/Drupal.php",
                "modules/x/x.info",
                "modules/x/x.info.yml",
                "modules/x/x.install",
            ] {
                let _ = scan(&files(&[
                    (file, text),
                    ("includes/bootstrap.inc", "define('VERSION','7.1');"),
                ]));
            }
        }
        // Random soups of the characters the parsers care about.
        let alphabet: Vec<char> =
            "ab_1 \t\r\n=;:'\"\\[]-#/*<>(){}&,.|~\u{feff}éfunctiondefineconstVERSIONx_update_7"
                .chars()
                .collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let len = (next() % 80) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = parse_info(&text);
            let _ = parse_info_yml(&text);
            let _ = schema_version(&text, "x");
            let _ = core_version_d7(&text);
            let _ = core_version_d8(&text);
            let _ = po_language(&text);
            let _ = wanted(&text);
            let _ = descend(&text);
            let _ = scan(&files(&[
                ("core/lib/Drupal.php", &text),
                ("modules/x/x.info.yml", &text),
                ("modules/x/x.install", &text),
            ]));
        }
        // Every prefix of a realistic file, cut at every char boundary.
        let text = "<?php\n/* c */ define('VERSION', '7.98'); $x = <<<EOT\nfoo\nEOT;\nfunction x_update_7001() {}\n";
        for (i, _) in text.char_indices() {
            let _ = schema_version(&text[..i], "x");
            let _ = core_version_d7(&text[..i]);
        }
    }
}
