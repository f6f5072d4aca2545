//! `berth`: the one binary. `berth serve <service>|all` runs the services; the other
//! commands are the operators' command line over the API (and Aegir's command forms).

mod aegir;
mod cli;
mod config;
mod serve;

use cli::{Cli, Command, TokenCommand};
use config::Settings;
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let strings: Option<Vec<String>> = argv.iter().map(|a| a.to_str().map(String::from)).collect();
    let argv = match strings {
        // Aegir's forms are plain text; anything else goes to clap as it came.
        Some(strings) => match aegir::rewrite(&strings) {
            Ok(Some(rewritten)) => rewritten.into_iter().map(Into::into).collect(),
            Ok(None) => argv,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => argv,
    };
    let cli = Cli::parse_with_after_help(
        argv,
        format!(
            "Aegir command forms (drush replaced by berth):\n{}",
            aegir::forms_help()
        ),
    );
    match cli.command {
        Command::Serve { service } => serve_main(service),
        Command::SecretKey => {
            println!("{}", berth_secrets::SecretKey::generate_hex());
            ExitCode::SUCCESS
        }
        Command::Token(TokenCommand::Create { name }) => {
            block_on(token_create(&name)).unwrap_or_else(report)
        }
        command => {
            block_on(async { Ok(cli::run(&cli.api, command).await?) }).unwrap_or_else(report)
        }
    }
}

fn report(e: anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}

/// A small runtime for the client commands.
fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    f: F,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

fn serve_main(service: serve::Service) -> ExitCode {
    let settings = match Settings::load().and_then(|s| serve::check(service, &s).map(|()| s)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // The guard outlives the runtime: it flushes spans on drop, outside async code.
    let _telemetry = match berth_telemetry::init(&service.telemetry_name(), &settings.telemetry()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: telemetry: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("berth")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(serve::run(service, settings));
    // Blocking work still running (a hung child process, say) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each failure was logged as it happened; this is the summary.
            eprintln!("error: berth serve {service}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `berth token create --name NAME`: an admin token, printed alone on stdout.
async fn token_create(name: &str) -> anyhow::Result<ExitCode> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        anyhow::bail!("--name must be 1 to 100 printable characters");
    }
    let settings = Settings::load()?;
    let store = berth_store::Store::connect(&settings.database_url, 2)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot use the database named by BERTH_DATABASE_URL: {e}\n\
                 hint: run this where PostgreSQL is reachable, with the same BERTH_DATABASE_URL \
                 (or BERTH_CONFIG) as the API"
            )
        })?;
    let token = store.create_token(name, "admin").await?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
