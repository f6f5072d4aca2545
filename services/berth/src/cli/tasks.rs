//! `berth tasks …`, and following a task's log to its end (which the other commands do
//! with `--follow`).

use super::args::TasksCommand;
use super::client::{CliError, Client, decode, segment, usage};
use super::render::{log_line, print_json, task_details, tasks_table};
use berth_contracts::{LogPage, Page, Task, TaskStatus};
use serde_json::{Value, json};
use std::process::ExitCode;
use std::time::Duration;
use uuid::Uuid;

/// How often `tasks log --follow` asks for new log entries.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(300);
/// How long `--follow` keeps trying while the API does not answer (restarting, say).
const FOLLOW_PATIENCE: Duration = Duration::from_secs(30);

fn task_id(id: &str) -> Result<Uuid, CliError> {
    Uuid::parse_str(id.trim()).map_err(|_| usage(format!("`{id}` is not a task id (a UUID)")))
}

/// Exit status of a followed task: 0 on success or warning, 1 otherwise.
pub fn exit_for(status: TaskStatus) -> ExitCode {
    match status {
        TaskStatus::Success | TaskStatus::Warning => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

pub(crate) async fn tasks(
    client: &Client,
    json: bool,
    c: TasksCommand,
) -> Result<ExitCode, CliError> {
    match c {
        TasksCommand::List {
            status,
            task_type,
            target,
            limit,
            offset,
        } => {
            let mut q = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
            if let Some(s) = status {
                q.push(("status", s));
            }
            if let Some(t) = task_type {
                q.push(("type", t));
            }
            if let Some(t) = target {
                q.push(("target", t));
            }
            let v = client.get("/tasks", &q).await?;
            if json {
                print_json(&v);
            } else {
                let page: Page<Task> = decode("tasks", v)?;
                print!("{}", tasks_table(&page));
                let shown = page.items.len() as i64;
                if page.total > page.offset + shown {
                    eprintln!(
                        "({shown} of {} shown; more with --offset {})",
                        page.total,
                        page.offset + shown
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Show { id } => {
            let id = task_id(&id)?;
            let v = client.get(&format!("/tasks/{id}"), &[]).await?;
            if json {
                print_json(&v);
            } else {
                print!("{}", task_details(&decode("task", v)?));
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Log { id, follow: false } => {
            let id = task_id(&id)?;
            let v = client
                .get(&format!("/tasks/{id}/log"), &[("after", "0".into())])
                .await?;
            if json {
                print_json(&v);
            } else {
                let page: LogPage = decode("task log", v)?;
                for e in &page.entries {
                    println!("{}", log_line(e));
                }
                eprintln!("task {id} is {}", page.status.as_str());
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Log { id, follow: true } => {
            let id = task_id(&id)?;
            let status = follow_log(client, id, json).await?;
            Ok(exit_for(status))
        }
        TasksCommand::Create {
            task_type,
            target,
            args,
            follow,
        } => {
            let args: Value = match args {
                None => json!({}),
                Some(a) => serde_json::from_str(&a)
                    .map_err(|e| usage(format!("--args is not valid JSON: {e}")))?,
            };
            if !args.is_object() {
                return Err(usage(
                    "--args must be a JSON object, e.g. --args '{\"service\":\"db\"}'",
                ));
            }
            let v = client
                .post(
                    "/tasks",
                    &json!({"type": task_type, "target": target, "args": args}),
                )
                .await?;
            queued(client, json, v, follow, "queued").await
        }
        TasksCommand::Cancel { id } => {
            let id = task_id(&id)?;
            let v = client
                .post(&format!("/tasks/{id}/cancel"), &json!({}))
                .await?;
            if json {
                print_json(&v);
            } else {
                let t: Task = decode("task", v)?;
                if t.cancel_requested_at.is_some() && !t.status.is_finished() {
                    println!(
                        "task {} is being cancelled: its running step is stopped and the steps \
                         it did are taken back (follow: berth tasks log {} --follow)",
                        t.id, t.id
                    );
                } else {
                    println!("task {} is {}", t.id, t.status.as_str());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TasksCommand::Retry { id, follow } => {
            let id = task_id(&id)?;
            let v = client
                .post(&format!("/tasks/{id}/retry"), &json!({}))
                .await?;
            queued(client, json, v, follow, &format!("queued (retry of {id})")).await
        }
    }
}

/// Reports a task the API accepted; follows it when asked.
pub(crate) async fn queued(
    client: &Client,
    json: bool,
    v: Value,
    follow: bool,
    what: &str,
) -> Result<ExitCode, CliError> {
    let task: Task = decode("task", v.clone())?;
    if !follow {
        if json {
            print_json(&v);
        } else {
            // Only the id on stdout, for scripts: `id=$(berth tasks create …)`.
            println!("{}", task.id);
            eprintln!(
                "task {} {what}: {} on {}",
                task.id, task.task_type, task.target
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        println!("{}", serde_json::to_string(&v).unwrap_or_default());
    } else {
        eprintln!(
            "task {} {what}: {} on {}",
            task.id, task.task_type, task.target
        );
    }
    let status = follow_log(client, task.id, json).await?;
    Ok(exit_for(status))
}

/// Prints a task's log as it grows, until the task is finished; its final status.
/// With `json`, one log entry per line (and a final `{"status": …}` line).
pub(crate) async fn follow_log(
    client: &Client,
    id: Uuid,
    json: bool,
) -> Result<TaskStatus, CliError> {
    let path = format!("/tasks/{id}/log");
    let mut after: i64 = 0;
    let mut failing_since: Option<std::time::Instant> = None;
    // After the status is seen finished, one more read catches entries written with it.
    let mut last_round = false;
    loop {
        let page = match client.get(&path, &[("after", after.to_string())]).await {
            Ok(v) => {
                if failing_since.take().is_some() {
                    eprintln!("(the API answers again)");
                }
                decode::<LogPage>("task log", v)?
            }
            Err(e @ (CliError::Unreachable { .. } | CliError::Timeout { .. })) => {
                let since = *failing_since.get_or_insert_with(|| {
                    eprintln!("(the API does not answer; retrying for {FOLLOW_PATIENCE:?})");
                    std::time::Instant::now()
                });
                if since.elapsed() > FOLLOW_PATIENCE {
                    return Err(e);
                }
                tokio::time::sleep(FOLLOW_INTERVAL).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        for e in &page.entries {
            after = after.max(e.seq);
            if json {
                println!("{}", serde_json::to_string(e).unwrap_or_default());
            } else {
                println!("{}", log_line(e));
            }
        }
        if page.status.is_finished() {
            if last_round {
                let link = login_link_after(client, id, page.status).await;
                if json {
                    let mut end = json!({"task": id, "status": page.status});
                    if let Some(l) = &link {
                        end["login_link"] = l.as_str().into();
                    }
                    println!("{end}");
                } else {
                    eprintln!("task {id} finished: {}", page.status.as_str());
                    if let Some(l) = &link {
                        println!("one-time login link (valid 24 h, until used): {l}");
                    }
                }
                return Ok(page.status);
            }
            last_round = true;
            continue;
        }
        tokio::time::sleep(FOLLOW_INTERVAL).await;
    }
}

/// The one-time login link a finished install or login-reset made, to print at the end
/// of following it; `None` for other tasks, a failure, or a link the API does not give.
async fn login_link_after(client: &Client, id: Uuid, status: TaskStatus) -> Option<String> {
    if !matches!(status, TaskStatus::Success | TaskStatus::Warning) {
        return None;
    }
    let task: Task = decode("task", client.get(&format!("/tasks/{id}"), &[]).await.ok()?).ok()?;
    if !matches!(task.task_type.as_str(), "install" | "login-reset") {
        return None;
    }
    let site = client
        .get(&format!("/sites/{}", segment(&task.target)), &[])
        .await
        .ok()?;
    site["login_link"].as_str().map(str::to_owned)
}

/// Prints a created context and follows (or names) the task it queued.
pub(crate) async fn created(
    client: &Client,
    json: bool,
    v: Value,
    follow: bool,
    details: String,
) -> Result<ExitCode, CliError> {
    let task = v.get("task").and_then(Value::as_str).map(str::to_string);
    if json && !follow {
        print_json(&v);
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        print!("{details}");
    }
    match task {
        Some(t) if follow => {
            let id = t.parse().map_err(|_| usage("the API gave a bad task id"))?;
            eprintln!("following task {t}");
            Ok(exit_for(follow_log(client, id, json).await?))
        }
        Some(t) => {
            eprintln!("task {t} queued; follow it with `berth tasks log {t} --follow`");
            Ok(ExitCode::SUCCESS)
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followed_tasks_exit_zero_only_on_success_or_warning() {
        assert_eq!(exit_for(TaskStatus::Success), ExitCode::SUCCESS);
        assert_eq!(exit_for(TaskStatus::Warning), ExitCode::SUCCESS);
        assert_eq!(exit_for(TaskStatus::Error), ExitCode::FAILURE);
        assert_eq!(exit_for(TaskStatus::Cancelled), ExitCode::FAILURE);
    }
}
