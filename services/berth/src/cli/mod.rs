//! The command line over the REST API: `servers`, `platforms`, `sites`, `tasks`,
//! `dead-letters`, `schedules` and the hidden `contexts save` (Aegir's `provision-save`).
//!
//! Output is a table or a few `key  value` lines for people, or the API's JSON as it came
//! with `--json`. API errors (problem+json) print `error: <title>: <detail>` and exit 1.
//!
//! Split by job, dependencies one way: `args` (clap types) and the leaves `client` (the
//! API) and `render` (text for people) are used by the command modules, which this module
//! dispatches to; none of them imports this module or `crate::aegir`.

pub mod args;
mod backup_targets;
mod client;
mod contexts;
mod dead_letters;
mod platforms;
mod render;
mod schedules;
mod servers;
mod sites;
mod tasks;
mod tenancy;
mod webhooks;

pub use args::{ApiArgs, Cli, Command, ContextsCommand, TokenCommand};
pub use client::CliError;
use client::Client;
use std::process::ExitCode;

/// Runs an API command (everything but `serve`, `token` and `secret-key`).
pub async fn run(api: &ApiArgs, command: Command) -> Result<ExitCode, CliError> {
    let client = Client::new(&api.api_url, api.token.as_deref())?;
    let json = api.json;
    match command {
        Command::Servers(c) => servers::servers(&client, json, c).await,
        Command::Tasks(c) => tasks::tasks(&client, json, c).await,
        Command::Platforms(c) => platforms::platforms(&client, json, c).await,
        Command::Sites(c) => sites::sites(&client, json, c).await,
        Command::Contexts(c) => {
            let ContextsCommand::Save(c) = *c;
            contexts::save(&client, json, c).await
        }
        Command::DeadLetters(c) => dead_letters::dead_letters(&client, json, c).await,
        Command::Schedules(c) => schedules::schedules(&client, json, c).await,
        Command::BackupTargets(c) => backup_targets::backup_targets(&client, json, c).await,
        Command::Clients(c) => tenancy::clients(&client, json, c).await,
        Command::Tokens(c) => tenancy::tokens(&client, json, c).await,
        Command::Webhooks(c) => webhooks::webhooks(&client, json, c).await,
        Command::Serve { .. } | Command::Token(_) | Command::SecretKey => {
            unreachable!("handled in main")
        }
    }
}
