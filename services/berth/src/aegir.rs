//! Aegir's command forms, with `drush` replaced by `berth` (seeds: 002 "Provision").
//!
//! `berth @server_master provision-verify` and `berth @hostmaster hosting-task
//! @server_master verify` are rewritten, before clap sees them, into the berth commands
//! that do the same: `berth tasks create verify server_master --follow`. Rewriting argv
//! (rather than running the commands here) keeps this module free of I/O and lets the
//! global options (`--json`, `--api-url`, `--token`) work in both places.
//!
//! A form is a pattern of words and a function building berth's words from what the
//! pattern captured; adding one (`provision-save`, `provision-install`, …) is adding an
//! entry to [`FORMS`].

use std::fmt;

/// One word of a form's pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pat {
    /// Exactly this word.
    Lit(&'static str),
    /// A context alias, `@name`; captures `name` (without the `@`).
    Alias,
    /// Any word not beginning with `@` or `-`; captured as it is.
    Word,
}

/// An Aegir command form berth understands.
pub struct Form {
    /// The words (options apart) the form matches, alias included.
    pub pattern: &'static [Pat],
    /// How the form is written, for help and errors.
    pub usage: &'static str,
    /// What it does.
    pub does: &'static str,
    /// berth's subcommand words, from the captures in pattern order.
    build: fn(&[&str]) -> Vec<String>,
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

/// `tasks create <type> <target> --args <json> --follow`.
fn with_args(task_type: &str, target: &str, args: &[(&str, &str)]) -> Vec<String> {
    let obj: serde_json::Map<String, serde_json::Value> = args
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    let mut out = words(&["tasks", "create", task_type, target, "--args"]);
    out.push(serde_json::Value::Object(obj).to_string());
    out.push("--follow".into());
    out
}

/// Every supported form, in the order they are listed to users.
pub const FORMS: &[Form] = &[
    Form {
        pattern: &[Pat::Alias, Pat::Lit("provision-verify")],
        usage: "berth @<context> provision-verify",
        does: "queue a verify task on the context and follow its log",
        build: |c| words(&["tasks", "create", "verify", c[0], "--follow"]),
    },
    Form {
        pattern: &[Pat::Lit("provision-verify"), Pat::Alias],
        usage: "berth provision-verify @<context>",
        does: "the same",
        build: |c| words(&["tasks", "create", "verify", c[0], "--follow"]),
    },
    Form {
        pattern: &[Pat::Lit("provision-save"), Pat::Alias],
        usage: "berth provision-save @<context> --context_type=… --property=value",
        does: "create or change a server, platform or site context (a new site's install is \
               queued), or --delete it",
        build: |c| words(&["contexts", "save", c[0]]),
    },
    Form {
        pattern: &[Pat::Alias, Pat::Lit("provision-install")],
        usage: "berth @<site> provision-install",
        does: "install the site (following the install its save queued) and follow its log",
        build: |c| words(&["sites", "install", c[0], "--follow"]),
    },
    Form {
        pattern: &[Pat::Alias, Pat::Lit("provision-disable")],
        usage: "berth @<site> provision-disable",
        does: "queue a disable task on the site and follow its log",
        build: |c| words(&["tasks", "create", "disable", c[0], "--follow"]),
    },
    Form {
        pattern: &[Pat::Alias, Pat::Lit("provision-enable")],
        usage: "berth @<site> provision-enable",
        does: "queue an enable task on the site and follow its log",
        build: |c| words(&["tasks", "create", "enable", c[0], "--follow"]),
    },
    Form {
        pattern: &[Pat::Alias, Pat::Lit("provision-login-reset")],
        usage: "berth @<site> provision-login-reset",
        does: "queue a login reset (a new one-time login link) and follow its log",
        build: |c| words(&["tasks", "create", "login-reset", c[0], "--follow"]),
    },
    Form {
        pattern: &[Pat::Alias, Pat::Lit("user-login")],
        usage: "berth @<site> user-login",
        does: "drush's one-time login link: a login reset, followed to the link it prints",
        build: |c| words(&["tasks", "create", "login-reset", c[0], "--follow"]),
    },
    Form {
        pattern: &[Pat::Alias, Pat::Lit("provision-backup")],
        usage: "berth @<site> provision-backup",
        does: "queue a backup of the site and follow its log",
        build: |c| words(&["tasks", "create", "backup", c[0], "--follow"]),
    },
    Form {
        pattern: &[Pat::Alias, Pat::Lit("provision-restore"), Pat::Word],
        usage: "berth @<site> provision-restore <backup-id>",
        does: "restore one of the site's backups (see `berth sites backups`) and follow",
        build: |c| with_args("restore", c[0], &[("backup", c[1])]),
    },
    Form {
        pattern: &[Pat::Alias, Pat::Lit("provision-delete")],
        usage: "berth @<site> provision-delete",
        does: "delete the site (backup first; it must be disabled) and follow its log",
        build: |c| words(&["tasks", "create", "delete", c[0], "--follow"]),
    },
    Form {
        pattern: &[Pat::Alias, Pat::Lit("provision-migrate"), Pat::Alias],
        usage: "berth @<site> provision-migrate @<platform>",
        does: "migrate the site to the platform (refused on package errors) and follow",
        build: |c| with_args("migrate", c[0], &[("platform", c[1])]),
    },
    Form {
        pattern: &[
            Pat::Alias,
            Pat::Lit("provision-clone"),
            Pat::Alias,
            Pat::Alias,
        ],
        usage: "berth @<site> provision-clone @<new-uri> @<platform>",
        does: "clone the site to a new uri on the platform and follow",
        build: |c| with_args("clone", c[0], &[("uri", c[1]), ("platform", c[2])]),
    },
    Form {
        pattern: &[
            Pat::Lit("@hostmaster"),
            Pat::Lit("hosting-task"),
            Pat::Alias,
            Pat::Word,
        ],
        usage: "berth @hostmaster hosting-task @<context> <task type>",
        does: "queue a task of that type on the context and follow its log",
        build: |c| words(&["tasks", "create", c[1], c[0], "--follow"]),
    },
];

/// Global options that take a value, as berth's clap definition has them.
const VALUE_OPTIONS: [&str; 2] = ["--api-url", "--token"];

/// drush's verbosity options, accepted and dropped since berth always shows the whole log;
/// `--force` (hosting-task's: run the task even if one is running), accepted and dropped
/// since berth always queues the task, behind the one running on its target; and drush's
/// `-y`/`--yes`, since berth asks nothing. Before or after the form's words.
const IGNORED_OPTIONS: [&str; 7] = ["--debug", "-d", "--verbose", "-v", "--force", "-y", "--yes"];

/// Is `arg` one of berth's own global options (which may come before a form)?
fn is_global(arg: &str) -> bool {
    arg == "--json"
        || VALUE_OPTIONS
            .iter()
            .any(|o| arg == *o || arg.strip_prefix(o).is_some_and(|v| v.starts_with('=')))
}

/// First words of Aegir's and drush's commands that no form begins with: refused with the
/// berth command to use, rather than left to clap as an unknown subcommand.
fn is_aegir_word(w: &str) -> bool {
    ["provision-", "hosting-", "hostmaster-"]
        .iter()
        .any(|p| w.starts_with(p))
        || matches!(w, "user-login" | "make")
}

/// Aegir's commands that berth does not (yet) provide, for a more helpful error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedForm {
    pub given: String,
    /// The berth command to use instead.
    pub instead: String,
}

impl fmt::Display for UnsupportedForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "`berth {}` is not a supported Aegir command form.\nInstead, in berth: {}\n\
             Supported Aegir forms:",
            self.given, self.instead
        )?;
        f.write_str(&forms_help())?;
        write!(
            f,
            "\nFor berth's own commands see `berth --help` (e.g. `berth tasks create <type> <target> --follow`)."
        )
    }
}

impl std::error::Error for UnsupportedForm {}

/// The supported forms, one per line, for `--help` and errors.
pub fn forms_help() -> String {
    let width = FORMS.iter().map(|f| f.usage.len()).max().unwrap_or(0);
    FORMS
        .iter()
        .map(|f| format!("  {:width$}  {}\n", f.usage, f.does))
        .collect()
}

/// Is `arg` a global option taking a value in the next argument?
fn takes_value(arg: &str) -> bool {
    VALUE_OPTIONS.contains(&arg)
}

/// Rewrites an Aegir command form into berth's own argv; `Ok(None)` when `argv` (program
/// name first) is not an Aegir form and goes to clap as it is.
///
/// It is an Aegir form when its first word after any leading options begins with `@`, or
/// is a word of Aegir's or drush's (`provision-verify`, `hosting-import`, `make`).
pub fn rewrite(argv: &[String]) -> Result<Option<Vec<String>>, UnsupportedForm> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(None);
    };
    // Leading global options stay where they are.
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') && args[i] != "-" && args[i] != "--" {
        i += if takes_value(&args[i]) { 2 } else { 1 };
    }
    let (leading, rest) = args.split_at(i.min(args.len()));
    let Some(first) = rest.first() else {
        return Ok(None);
    };
    let starts_a_form = first.starts_with('@')
        || is_aegir_word(first)
        || FORMS
            .iter()
            .any(|f| matches!(f.pattern.first(), Some(Pat::Lit(w)) if *w == first.as_str()));
    if !starts_a_form {
        return Ok(None);
    }
    // Only berth's global options may come first (clap takes no others before the
    // subcommand); drush's verbosity is dropped there too.
    let leading: Vec<&String> = leading
        .iter()
        .filter(|a| !IGNORED_OPTIONS.contains(&a.as_str()))
        .collect();
    let mut k = 0;
    while k < leading.len() {
        let a = leading[k].as_str();
        if !is_global(a) {
            return Err(UnsupportedForm {
                given: args.join(" "),
                instead: format!(
                    "the same with `{a}` and the other Aegir options after the command's words \
                     (`berth provision-save @<context> --context_type=… --property=value`); \
                     only --json, --api-url and --token go before them"
                ),
            });
        }
        k += if takes_value(a) { 2 } else { 1 };
    }

    // Words of the form, and the options after it (passed on, but for drush's verbosity).
    let mut positional: Vec<&str> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    let mut j = 0;
    while j < rest.len() {
        let a = rest[j].as_str();
        if a.starts_with('-') && a.len() > 1 {
            if takes_value(a) {
                options.push(a.to_string());
                if let Some(v) = rest.get(j + 1) {
                    options.push(v.clone());
                }
                j += 2;
                continue;
            }
            if !IGNORED_OPTIONS.contains(&a) {
                options.push(a.to_string());
            }
        } else {
            positional.push(a);
        }
        j += 1;
    }

    // Aegir's short alias of the front end's site.
    if positional.first() == Some(&"@hm") {
        positional[0] = "@hostmaster";
    }

    let unsupported = || UnsupportedForm {
        given: rest.join(" "),
        instead: instead_of(&positional),
    };
    let form = FORMS
        .iter()
        .find_map(|f| capture(f.pattern, &positional).map(|c| (f, c)))
        .ok_or_else(unsupported)?;
    let (form, captures) = form;
    let mut out = Vec::with_capacity(argv.len() + 4);
    out.push(program.clone());
    out.extend(leading.into_iter().cloned());
    out.extend((form.build)(&captures));
    out.extend(options);
    Ok(Some(out))
}

/// The berth command that does what an unsupported Aegir form asks for (its words, options
/// apart), as a line for the refusal.
pub fn instead_of(words: &[&str]) -> String {
    let bare = |w: &str| w.trim_start_matches('@').to_string();
    let types = berth_hosting::tasks::TaskType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>();
    let tasks = || format!("(task types: {})", types.join(", "));
    let is_alias = |w: &str| w.len() > 1 && w.starts_with('@');
    match words {
        ["@hostmaster", cmd, rest @ ..] => match *cmd {
            "hosting-task" if rest.len() == 1 && !is_alias(rest[0]) => format!(
                "`berth tasks log {0} --follow` (berth runs each task as soon as it is queued; \
                 `berth tasks retry {0} --follow` runs a failed one again; ids are UUIDs: \
                 `berth tasks list`)",
                rest[0]
            ),
            "hosting-task" => {
                let ctx = rest.first().map(|w| bare(w)).unwrap_or("<context>".into());
                let ty = rest.get(1).map(|w| bare(w)).unwrap_or("<type>".into());
                format!("`berth tasks create {ty} {ctx} --follow` {}", tasks())
            }
            "hosting-dispatch" | "hosting-queued" | "hosting-tasks" | "hosting-cron" => {
                "`berth tasks list --status queued` (berth starts each task as soon as it is \
                 queued: there is no dispatcher to run)"
                    .into()
            }
            "hostmaster-pause" => "stop `berth serve state`: queued tasks wait in RabbitMQ until \
                 it runs again (berth has no task cron to pause)"
                .into(),
            "vset" | "variable-set" => "berth has no front-end variables: its settings are \
                 environment variables (README, Configuration), and it starts each task as soon \
                 as it is queued (there is no queue frequency)"
                .into(),
            "provision-restore" | "provision-deploy" => restore("<site>"),
            "hosting-import" => {
                let ctx = rest.first().map(|w| bare(w)).unwrap_or("<context>".into());
                format!(
                    "`berth tasks create verify {ctx} --follow` for a context berth has \
                     (`berth provision-save @{ctx} --context_type=…` makes one)"
                )
            }
            _ => format!("`berth tasks create <type> <context> --follow` {}", tasks()),
        },
        [ctx, cmd, rest @ ..] if is_alias(ctx) && cmd.starts_with("provision-") => {
            let ctx = bare(ctx);
            match &cmd["provision-".len()..] {
                x @ ("lock" | "unlock") => format!("`berth platforms {x} {ctx}`"),
                "backup-delete" => format!(
                    "`berth tasks create backup-delete {ctx} --args '{{\"backup\":\"<id>\"}}' \
                     --follow` (ids: `berth sites backups {ctx}`)"
                ),
                "restore" | "deploy" => restore(&ctx),
                "migrate" => format!("`berth @{ctx} provision-migrate @<platform>`"),
                "clone" => format!("`berth @{ctx} provision-clone @<new uri> @<platform>`"),
                // Aegir's save takes the context first; the options stay as they were.
                "save" => format!(
                    "`berth provision-save @{ctx}` with the same options after it (any \
                     --context_type)"
                ),
                "import" => format!(
                    "`berth provision-save @{ctx} --context_type=site --platform=@<platform> …` \
                     then `berth @{ctx} provision-install`"
                ),
                x if types.contains(&x) && rest.is_empty() => {
                    format!("`berth tasks create {x} {ctx} --follow`")
                }
                x if types.contains(&x) => format!(
                    "`berth tasks create {x} {ctx} --args '<json>' --follow` (arguments go in \
                     --args)"
                ),
                x => format!(
                    "berth has no `{x}` task; `berth tasks create <type> {ctx} --follow` {}",
                    tasks()
                ),
            }
        }
        [ctx, "hosting-task", rest @ ..] if is_alias(ctx) => {
            let target = rest.first().map(|w| bare(w)).unwrap_or("<context>".into());
            let ty = rest.get(1).map(|w| bare(w)).unwrap_or("<type>".into());
            format!(
                "`berth @hostmaster hosting-task @{target} {ty}` (hosting-task is hostmaster's)"
            )
        }
        [ctx] if is_alias(ctx) => format!(
            "`berth @{0} provision-verify`, or `berth servers|platforms|sites show {0}`",
            bare(ctx)
        ),
        ["provision-restore" | "provision-deploy", ..] => restore("<site>"),
        ["user-login", ..] => "`berth @<site> user-login` (the site's alias comes first)".into(),
        ["make", ..] => "berth does not build codebases: build the platform's with drush make \
             (or composer) yourself, then `berth provision-save @platform_<name> \
             --context_type=platform --root=<its path>` and `berth @platform_<name> \
             provision-verify`"
            .into(),
        [cmd, rest @ ..] if cmd.starts_with("hosting-") || cmd.starts_with("hostmaster-") => {
            // Hostmaster's commands run on its alias.
            let words: Vec<&str> = ["@hostmaster", cmd]
                .into_iter()
                .chain(rest.iter().copied())
                .collect();
            instead_of(&words)
        }
        [cmd, ctx, ..] if cmd.starts_with("provision-") => {
            format!(
                "`berth @{} {cmd}` (the context, with its @, comes first)",
                bare(ctx)
            )
        }
        _ => format!("`berth tasks create <type> <target> --follow` {}", tasks()),
    }
}

/// Restoring a backup: berth restores its own backups, by id, not an archive's path.
fn restore(site: &str) -> String {
    format!(
        "`berth @{site} provision-restore <backup id>` (berth restores its own backups, by id; \
         ids: `berth sites backups {site}`)"
    )
}

/// Matches `words` against `pattern` in full; the captures in order.
fn capture<'a>(pattern: &[Pat], words: &[&'a str]) -> Option<Vec<&'a str>> {
    if pattern.len() != words.len() {
        return None;
    }
    let mut caps = Vec::new();
    for (p, w) in pattern.iter().zip(words) {
        match p {
            Pat::Lit(l) if l == w => {}
            Pat::Lit(_) => return None,
            Pat::Alias => {
                let name = w.strip_prefix('@')?;
                if name.is_empty() {
                    return None;
                }
                caps.push(name);
            }
            Pat::Word => {
                if w.is_empty() || w.starts_with('@') || w.starts_with('-') {
                    return None;
                }
                caps.push(*w);
            }
        }
    }
    Some(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        std::iter::once("berth")
            .chain(s.split_whitespace())
            .map(String::from)
            .collect()
    }

    fn rewritten(s: &str) -> String {
        rewrite(&argv(s))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .unwrap_or_else(|| panic!("{s}: not an Aegir form"))
            .join(" ")
    }

    #[test]
    fn provision_verify_on_an_alias_queues_a_verify_and_follows_it() {
        assert_eq!(
            rewritten("@server_master provision-verify"),
            "berth tasks create verify server_master --follow"
        );
        assert_eq!(
            rewritten("@example.com provision-verify"),
            "berth tasks create verify example.com --follow"
        );
        assert_eq!(
            rewritten("provision-verify @platform_atriumhead"),
            "berth tasks create verify platform_atriumhead --follow"
        );
    }

    #[test]
    fn hosting_task_on_hostmaster_queues_that_task_type() {
        assert_eq!(
            rewritten("@hostmaster hosting-task @server_master verify"),
            "berth tasks create verify server_master --follow"
        );
        assert_eq!(
            rewritten("@hostmaster hosting-task @server_master noop"),
            "berth tasks create noop server_master --follow"
        );
    }

    #[test]
    fn the_seeds_site_forms_map_onto_contexts_and_sites() {
        assert_eq!(
            rewritten(
                "provision-save @example.com --context_type=site --uri=example.com \
                 --platform=@platform_x --db_server=@server_master --profile=standard \
                 --client_email=a@example.com"
            ),
            "berth contexts save example.com --context_type=site --uri=example.com \
             --platform=@platform_x --db_server=@server_master --profile=standard \
             --client_email=a@example.com"
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert_eq!(
            rewritten("@example.com provision-install --debug"),
            "berth sites install example.com --follow"
        );
        assert_eq!(
            rewritten("provision-save @example.com --delete"),
            "berth contexts save example.com --delete"
        );
        assert_eq!(
            rewritten("@example.com provision-login-reset"),
            "berth tasks create login-reset example.com --follow"
        );
        assert_eq!(
            rewritten("@example.com provision-migrate @platform_newer"),
            r#"berth tasks create migrate example.com --args {"platform":"platform_newer"} --follow"#
        );
        assert_eq!(
            rewritten("@example.com provision-clone @copy.example.com @platform_x"),
            r#"berth tasks create clone example.com --args {"platform":"platform_x","uri":"copy.example.com"} --follow"#
        );
    }

    #[test]
    fn global_options_are_kept_and_drush_verbosity_dropped() {
        assert_eq!(
            rewritten("--json --api-url http://h:1 @server_master provision-verify --debug"),
            "berth --json --api-url http://h:1 tasks create verify server_master --follow"
        );
        assert_eq!(
            rewritten("@server_master provision-verify --token t --json"),
            "berth tasks create verify server_master --follow --token t --json"
        );
        assert_eq!(
            rewritten("--api-url=http://h:1 @hostmaster hosting-task @server_master verify -v"),
            "berth --api-url=http://h:1 tasks create verify server_master --follow"
        );
    }

    #[test]
    fn berths_own_commands_are_left_alone() {
        for s in [
            "",
            "tasks list",
            "--json tasks list",
            "--api-url http://x servers show server_master",
            "tasks create verify @server_master",
            "--help",
            "serve all",
        ] {
            assert_eq!(rewrite(&argv(s)).unwrap(), None, "{s}");
        }
        assert_eq!(rewrite(&[]).unwrap(), None);
    }

    #[test]
    fn user_login_queues_a_login_reset_and_follows_it_to_the_link() {
        assert_eq!(
            rewritten("@example.com user-login"),
            "berth tasks create login-reset example.com --follow"
        );
    }

    #[test]
    fn hm_is_hostmaster() {
        assert_eq!(
            rewritten("@hm hosting-task @server_master verify"),
            "berth tasks create verify server_master --follow"
        );
    }

    #[test]
    fn drush_verbosity_and_yes_are_dropped_before_the_form_too() {
        assert_eq!(
            rewritten("-y --debug --json @server_master provision-verify -v"),
            "berth --json tasks create verify server_master --follow"
        );
        assert_eq!(
            rewritten("--token=t @server_master provision-verify"),
            "berth --token=t tasks create verify server_master --follow"
        );
    }

    #[test]
    fn hosting_task_force_is_accepted_and_ignored() {
        assert_eq!(
            rewritten("@hostmaster hosting-task @example.com verify --force"),
            "berth tasks create verify example.com --follow"
        );
    }

    #[test]
    fn every_refusal_names_the_berth_command_to_use_instead() {
        for (given, instead) in [
            (
                "@hostmaster hosting-task @server_master",
                "`berth tasks create <type> server_master --follow`",
            ),
            (
                "@hostmaster hosting-task @server_master verify extra",
                "`berth tasks create verify server_master --follow`",
            ),
            (
                "@hostmaster hosting-dispatch",
                "`berth tasks list --status queued`",
            ),
            (
                "@hostmaster hosting-import @server_master",
                "`berth tasks create verify server_master --follow`",
            ),
            (
                "@platform_x provision-lock",
                "`berth platforms lock platform_x`",
            ),
            (
                "@example.com provision-backup-delete",
                "`berth tasks create backup-delete example.com --args",
            ),
            (
                "@example.com provision-verify extra",
                "`berth tasks create verify example.com --args '<json>' --follow`",
            ),
            (
                "@example.com provision-import",
                "`berth provision-save @example.com --context_type=site",
            ),
            (
                "@server_master provision-save --context_type=server --http_service_type=nginx",
                "`berth provision-save @server_master` with the same options after it",
            ),
            (
                "@server_master hosting-task @x verify",
                "`berth @hostmaster hosting-task @x verify`",
            ),
            ("@server_master", "`berth @server_master provision-verify`"),
            (
                "provision-verify server_master",
                "`berth @server_master provision-verify`",
            ),
            (
                "@example.com provision-frobnicate",
                "berth has no `frobnicate` task; `berth tasks create <type> example.com",
            ),
            // The seeds' forms berth does not support (seed 003).
            (
                "@hostmaster hosting-task 1234 --verbose --debug",
                "`berth tasks log 1234 --follow`",
            ),
            (
                "@hostmaster hosting-cron --verbose --debug",
                "`berth tasks list --status queued`",
            ),
            (
                "-y @hostmaster vset hosting_queue_tasks_frequency 1",
                "berth has no front-end variables",
            ),
            ("@hostmaster hostmaster-pause", "stop `berth serve state`"),
            (
                "provision-restore /var/aegir/backup/",
                "`berth @<site> provision-restore <backup id>`",
            ),
            (
                "@hostmaster provision-deploy /var/aegir/backup/",
                "`berth @<site> provision-restore <backup id>`",
            ),
            (
                "@example.com provision-deploy /var/aegir/backup/x.tar.gz",
                "`berth @example.com provision-restore <backup id>`",
            ),
            (
                "make --working-copy p.make /var/aegir/platforms/p",
                "berth does not build codebases",
            ),
            ("user-login", "`berth @<site> user-login`"),
            (
                "hosting-import @platform_x",
                "`berth tasks create verify platform_x --follow`",
            ),
            (
                "--context_type=platform --root=/x provision-save @platform_x --backend",
                "the same with `--context_type=platform` and the other Aegir options after",
            ),
        ] {
            let err = rewrite(&argv(given)).expect_err(given).to_string();
            assert!(
                err.contains(&format!("Instead, in berth: {instead}")),
                "{given}: {err}"
            );
        }
    }

    #[test]
    fn unknown_forms_list_the_supported_ones() {
        for s in [
            "@server_master",
            "@server_master provision-import",
            "@hostmaster hosting-import @server_master",
            "@server_master hosting-task @x verify",
            "@hostmaster hosting-task server_master verify",
            "@hostmaster hosting-task @server_master",
            "@hostmaster hosting-task @server_master verify extra",
            "@ provision-verify",
            "provision-verify server_master",
            "@server_master provision-verify @x",
        ] {
            let err = rewrite(&argv(s)).expect_err(s).to_string();
            assert!(err.contains(&format!("`berth {s}`")), "{err}");
            for f in FORMS {
                assert!(err.contains(f.usage), "{err}");
            }
            assert!(err.contains("berth --help"), "{err}");
        }
    }

    #[test]
    fn every_aegir_rewrite_parses_as_a_berth_command() {
        use crate::cli::args::{Cli, Command, TasksCommand};
        use clap::Parser;
        for s in [
            "berth @server_master provision-verify",
            "berth --json @hostmaster hosting-task @server_master verify --debug",
            "berth -y @example.com user-login",
        ] {
            let argv: Vec<String> = s.split_whitespace().map(String::from).collect();
            let out = rewrite(&argv).unwrap().unwrap();
            let cli = Cli::try_parse_from(out).unwrap();
            assert!(matches!(
                cli.command,
                Command::Tasks(TasksCommand::Create { follow: true, .. })
            ));
        }
    }

    #[test]
    fn every_form_has_a_usage_matching_its_pattern() {
        for f in FORMS {
            let words: Vec<&str> = f
                .usage
                .split_whitespace()
                .skip(1)
                .filter(|w| !w.starts_with('-'))
                .collect();
            // `<task type>` is two words in the usage, one in the pattern.
            let joined = words.join(" ").replace("<task type>", "<type>");
            let n = joined.split_whitespace().count();
            assert_eq!(n, f.pattern.len(), "{}", f.usage);
        }
    }
}
