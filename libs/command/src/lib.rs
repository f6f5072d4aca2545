//! Running the programs a worker drives (nginx -t, php-fpm -t, named-checkzone, rndc…):
//! one runner for every worker, so each gets the same time limit, the same killing of the
//! child when the step is dropped (a cancel or a step timeout), and the same error text.
//!
//! Arguments are never secret: what needs a secret passes it in the environment
//! ([`Command::secret_env`]) or on stdin ([`Command::secret_stdin`]). Every secret a
//! command is given, and any other value named with [`Command::secret`], is replaced by
//! [`MASK`] in everything the runner logs or returns: the command line it logs, the
//! program's output and the text of its errors (a program may print its environment, or
//! echo its input in an error).

use std::path::Path;
use std::time::Duration;

use berth_broker::worker::{StepContext, StepError};
use tokio::io::AsyncWriteExt;

/// How long a program may run before it is killed and the run counts as transient failure.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// What a secret becomes in logs, outputs and errors.
pub const MASK: &str = "********";

/// `text` with every occurrence of each of `secrets` replaced by [`MASK`]. Empty secrets
/// are ignored; longer secrets are masked first, so one that holds another is masked
/// whole.
pub fn mask(text: &str, secrets: &[&str]) -> String {
    let mut secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    if secrets.is_empty() {
        return text.to_owned();
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    let mut out = text.to_owned();
    for s in secrets {
        if out.contains(s) {
            out = out.replace(s, MASK);
        }
    }
    out
}

/// A program that ran to its end: whether it exited 0, and its stdout then stderr, trimmed
/// (secrets masked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    pub success: bool,
    pub status: String,
    pub text: String,
}

/// A program that could not be run to its end.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{program} did not finish in {} s", .after.as_secs())]
    TimedOut { program: String, after: Duration },
    #[error("cannot run {program}: {source}")]
    CannotRun {
        program: String,
        source: std::io::Error,
    },
}

/// A program to run, its arguments, what it gets in its environment and on stdin, and
/// the secrets masked in what is logged or returned about it.
///
/// ```no_run
/// # async fn f(password: &str) -> Result<(), berth_broker::worker::StepError> {
/// let out = berth_command::Command::new("mariadb", &["--batch", "-e", "SELECT 1"])
///     .secret_env("MYSQL_PWD", password)
///     .run(true)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Command<'a> {
    program: &'a str,
    args: &'a [&'a str],
    env: Vec<(&'a str, &'a str)>,
    stdin: Option<&'a [u8]>,
    secrets: Vec<&'a str>,
    limit: Duration,
}

impl<'a> Command<'a> {
    /// `program` with `args`, stdin closed, the worker's environment, [`TIMEOUT`].
    pub fn new(program: &'a str, args: &'a [&'a str]) -> Self {
        Self {
            program,
            args,
            env: Vec::new(),
            stdin: None,
            secrets: Vec::new(),
            limit: TIMEOUT,
        }
    }

    /// An environment variable that is not secret.
    pub fn env(mut self, key: &'a str, value: &'a str) -> Self {
        self.env.push((key, value));
        self
    }

    /// An environment variable whose value is secret: masked wherever it shows.
    pub fn secret_env(mut self, key: &'a str, value: &'a str) -> Self {
        self.env.push((key, value));
        self.secrets.push(value);
        self
    }

    /// Bytes written to the program's stdin (then closed).
    pub fn stdin(mut self, input: &'a [u8]) -> Self {
        self.stdin = Some(input);
        self
    }

    /// A secret written to the program's stdin (then closed): masked wherever it shows.
    pub fn secret_stdin(mut self, input: &'a str) -> Self {
        self.stdin = Some(input.as_bytes());
        self.secrets.push(input);
        self
    }

    /// Another value to mask in what is logged or returned (one the program may print:
    /// a password it reads from a file, say).
    pub fn secret(mut self, value: &'a str) -> Self {
        self.secrets.push(value);
        self
    }

    /// A time limit other than [`TIMEOUT`].
    pub fn limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// `text` with this command's secrets masked.
    pub fn mask(&self, text: &str) -> String {
        mask(text, &self.secrets)
    }

    /// The command line as logged: `program arg…`, secrets masked.
    pub fn command_line(&self) -> String {
        let mut line = self.program.to_owned();
        for a in self.args {
            line.push(' ');
            line.push_str(a);
        }
        self.mask(&line)
    }

    /// Runs the program, killed when the future is dropped or after the time limit.
    pub async fn output(&self) -> Result<Ran, CommandError> {
        let mut cmd = tokio::process::Command::new(self.program);
        cmd.args(self.args)
            .envs(self.env.iter().copied())
            .stdin(if self.stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let cannot_run = |source| CommandError::CannotRun {
            program: self.mask(self.program),
            source,
        };
        let run = async {
            let mut child = cmd.spawn().map_err(cannot_run)?;
            let stdin = child.stdin.take();
            let feed = async {
                if let (Some(input), Some(mut w)) = (self.stdin, stdin) {
                    // A program that exits without reading all of its input is not an
                    // error of the runner: its status says how it went.
                    let _ = w.write_all(input).await;
                    let _ = w.shutdown().await;
                }
            };
            let ((), out) = tokio::join!(feed, child.wait_with_output());
            out.map_err(cannot_run)
        };
        let out = match tokio::time::timeout(self.limit, run).await {
            Err(_) => {
                return Err(CommandError::TimedOut {
                    program: self.mask(self.program),
                    after: self.limit,
                });
            }
            Ok(r) => r?,
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Ran {
            success: out.status.success(),
            status: out.status.to_string(),
            text: self.mask(text.trim()),
        })
    }

    /// Runs the program for a step: its output on success, else its output in the error,
    /// transient if `transient` (worth retrying), else permanent. A time-out is transient,
    /// a missing program permanent.
    pub async fn run(&self, transient: bool) -> Result<String, StepError> {
        let ran = self.output().await.map_err(|e| match e {
            CommandError::TimedOut { .. } => StepError::Transient(self.mask(&e.to_string())),
            CommandError::CannotRun { .. } => StepError::Permanent(self.mask(&e.to_string())),
        })?;
        if ran.success {
            return Ok(ran.text);
        }
        let msg = self.mask(&format!(
            "{} failed ({}): {}",
            self.command_line(),
            ran.status,
            ran.text
        ));
        Err(if transient {
            StepError::Transient(msg)
        } else {
            StepError::Permanent(msg)
        })
    }

    /// [`Self::run`], permanent on failure, with the command line in the step's log.
    pub async fn run_checked(&self, ctx: &StepContext) -> Result<String, StepError> {
        ctx.info(format!("running {}", self.command_line()));
        self.run(false).await
    }
}

/// Runs `program` with `args`, stdin closed, killed when the future is dropped or after
/// [`TIMEOUT`].
pub async fn output(program: &str, args: &[&str]) -> Result<Ran, CommandError> {
    Command::new(program, args).output().await
}

/// [`output`] with a time limit of its own.
pub async fn output_within(
    program: &str,
    args: &[&str],
    limit: Duration,
) -> Result<Ran, CommandError> {
    Command::new(program, args).limit(limit).output().await
}

/// Runs a program for a step ([`Command::run`]): its output on success, else its output
/// in the error, transient if `transient`, else permanent.
pub async fn run_command(
    program: &str,
    args: &[&str],
    transient: bool,
) -> Result<String, StepError> {
    Command::new(program, args).run(transient).await
}

/// [`run_command`], permanent on failure, with the command line in the step's log.
pub async fn run_checked(
    ctx: &StepContext,
    program: &str,
    args: &[&str],
) -> Result<String, StepError> {
    Command::new(program, args).run_checked(ctx).await
}

/// A directory a worker writes into: made when missing, and proved writable.
pub async fn ensure_dir(dir: &Path, ctx: &StepContext) -> Result<(), StepError> {
    match tokio::fs::metadata(dir).await {
        Ok(m) if m.is_dir() => ctx.info(format!("{} exists", dir.display())),
        Ok(_) => {
            return Err(StepError::Permanent(format!(
                "{} exists but is not a directory",
                dir.display()
            )));
        }
        Err(_) => {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                StepError::Permanent(format!("cannot create {}: {e}", dir.display()))
            })?;
            ctx.info(format!("created {}", dir.display()));
        }
    }
    let probe = dir.join(format!(".berth-verify-{}", std::process::id()));
    tokio::fs::write(&probe, b"")
        .await
        .map_err(|e| StepError::Permanent(format!("{} is not writable: {e}", dir.display())))?;
    let _ = tokio::fs::remove_file(&probe).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_and_status_of_a_real_program() {
        let ran = output("sh", &["-c", "echo out; echo err >&2; exit 3"])
            .await
            .unwrap();
        assert!(!ran.success);
        assert_eq!(ran.text, "out\nerr");
        let err = run_command("sh", &["-c", "echo nope; exit 1"], true)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StepError::Transient(m) if m.contains("nope")),
            "{err:?}"
        );
        assert_eq!(run_command("true", &[], false).await.unwrap(), "");
    }

    #[tokio::test]
    async fn a_missing_program_is_permanent_and_a_slow_one_is_killed_in_time() {
        let err = run_command("/nonexistent/berth-program", &[], true)
            .await
            .unwrap_err();
        assert!(matches!(err, StepError::Permanent(_)), "{err:?}");
        let started = std::time::Instant::now();
        let err = output_within("sleep", &["30"], Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(err, CommandError::TimedOut { .. }), "{err}");
        // Killed, not waited for: far less than the program's own 30 s.
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn mask_replaces_every_secret_the_longest_first() {
        assert_eq!(
            mask("pw=hunter2 again hunter2", &["hunter2"]),
            "pw=******** again ********"
        );
        // One secret inside another: the longer is masked whole, nothing of it is left.
        assert_eq!(
            mask("a=abc123 b=abc", &["abc", "abc123"]),
            "a=******** b=********"
        );
        // An empty secret would mask between every character: it is ignored.
        assert_eq!(mask("plain", &[""]), "plain");
        assert_eq!(mask("plain", &[]), "plain");
    }

    #[test]
    fn the_logged_command_line_masks_secrets() {
        let cmd = Command::new("mysql", &["--password=s3cr3t", "-e", "SELECT 1"]).secret("s3cr3t");
        assert_eq!(cmd.command_line(), "mysql --password=******** -e SELECT 1");
        let cmd = Command::new("true", &[]).secret_env("PW", "0badc0de");
        assert_eq!(cmd.mask("x 0badc0de y"), "x ******** y");
    }

    #[tokio::test]
    async fn a_secret_in_the_environment_or_on_stdin_never_comes_back() {
        let pw = "9f8e7d6c5b4a39281706";
        // A program that prints its environment and its input, then fails.
        let script = "echo \"env: $BERTH_PW\"; read line; echo \"stdin: $line\" >&2; exit 2";
        let args = ["-c", script];
        let ran = Command::new("sh", &args)
            .secret_env("BERTH_PW", pw)
            .output()
            .await
            .unwrap();
        assert_eq!(ran.text, "env: ********\nstdin:");
        let input = format!("{pw}\n");
        let err = Command::new("sh", &args)
            .env("BERTH_PW", "not-secret")
            .secret_stdin(&input)
            .secret(pw)
            .run(true)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains(pw), "{msg}");
        assert!(msg.contains("stdin: ********"), "{msg}");
        assert!(msg.contains("env: not-secret"), "{msg}");
        // What succeeds is masked too.
        let out = Command::new("sh", &["-c", "cat"])
            .secret_stdin(pw)
            .run(false)
            .await
            .unwrap();
        assert_eq!(out, MASK);
        // A secret in an argument (which callers must not do) is masked in the error too.
        let bad = format!("--pw={pw}");
        let err = Command::new("sh", &["-c", "exit 1", &bad])
            .secret(pw)
            .run(false)
            .await
            .unwrap_err();
        assert!(!err.to_string().contains(pw), "{err}");
    }
}
