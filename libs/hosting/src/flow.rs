//! The dispatcher's decisions, without I/O: given a task's state, its steps' statuses and
//! what just happened to one step, which status the step takes and what happens next —
//! the next step sent, a compensation (newest first), or the task's end.
//!
//! The dispatcher loads the task and its steps under the target's lock, asks here, and
//! applies the answer in the same transaction.

use berth_contracts::{StepPhase, StepStatus, TaskStatus};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskState {
    pub status: TaskStatus,
    /// A cancel was asked for while it ran.
    pub cancel_requested: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepState {
    pub id: Uuid,
    pub status: StepStatus,
    /// It has a step that takes its effect back.
    pub undoable: bool,
}

/// What a worker (or the broker) said about a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Log lines of a step still running.
    Progress,
    /// A transient failure; the worker tries again later.
    Retrying,
    Succeeded {
        warning: bool,
    },
    /// Stopped (or not started) for its task's cancel.
    Stopped {
        started: bool,
    },
    /// Failed for good: a permanent error, attempts exhausted, a step that ran past its
    /// time limit, or no worker took it (a dead letter).
    Failed,
}

/// What the dispatcher does next for the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send this step to its worker: to run it, or to take it back.
    Send { step: Uuid, phase: StepPhase },
    /// End the task with this status.
    Finish(TaskStatus),
    /// Nothing until the next event (a step is live).
    Wait,
}

/// The decision on an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not for a live step of this task (a redelivered or late result, an unknown step):
    /// recorded nowhere.
    Ignore,
    /// The step's log (and, for a retry, its attempt) is recorded; nothing moves.
    Record,
    /// The step takes status `to` (`finished`: it ended), then `next`.
    Move {
        to: StepStatus,
        finished: bool,
        next: Next,
    },
}

fn done(s: StepStatus) -> bool {
    matches!(s, StepStatus::Success | StepStatus::Warning)
}

/// The next step to run, or the task's end when all are done (a warning in any step makes
/// the task end with a warning).
pub fn advance(steps: &[StepState]) -> Next {
    match steps.iter().find(|s| !done(s.status)) {
        None if steps.iter().any(|s| s.status == StepStatus::Warning) => {
            Next::Finish(TaskStatus::Warning)
        }
        None => Next::Finish(TaskStatus::Success),
        Some(s) if s.status == StepStatus::Pending => Next::Send {
            step: s.id,
            phase: StepPhase::Run,
        },
        Some(_) => Next::Wait,
    }
}

/// Taking back, newest first, the steps done before a failure or a cancel (one at a
/// time); then the end: `cancelled` if that was asked for, else `error`.
pub fn undo(task: TaskState, steps: &[StepState]) -> Next {
    if steps.iter().any(|s| s.status == StepStatus::Compensating) {
        return Next::Wait;
    }
    match steps.iter().rev().find(|s| done(s.status) && s.undoable) {
        Some(s) => Next::Send {
            step: s.id,
            phase: StepPhase::Compensate,
        },
        None if task.cancel_requested => Next::Finish(TaskStatus::Cancelled),
        None => Next::Finish(TaskStatus::Error),
    }
}

/// The decision on `event` about step `step_id` in `phase`.
pub fn decide(
    task: TaskState,
    steps: &[StepState],
    step_id: Uuid,
    phase: StepPhase,
    event: Event,
) -> Decision {
    let Some(step) = steps.iter().find(|s| s.id == step_id) else {
        return Decision::Ignore;
    };
    let live = match phase {
        StepPhase::Run => StepStatus::Running,
        StepPhase::Compensate => StepStatus::Compensating,
    };
    let after = |to: StepStatus| -> Vec<StepState> {
        steps
            .iter()
            .map(|s| StepState {
                status: if s.id == step_id { to } else { s.status },
                ..*s
            })
            .collect()
    };
    match event {
        Event::Progress | Event::Retrying => {
            if matches!(step.status, StepStatus::Running | StepStatus::Compensating) {
                Decision::Record
            } else {
                Decision::Ignore
            }
        }
        _ if step.status != live => Decision::Ignore,
        Event::Succeeded { warning } => match phase {
            StepPhase::Run => {
                let to = if warning {
                    StepStatus::Warning
                } else {
                    StepStatus::Success
                };
                let steps = after(to);
                let next = if task.status != TaskStatus::Processing {
                    // The task ended meanwhile (it was failed): the result is only noted.
                    Next::Wait
                } else if task.cancel_requested {
                    // Ended before its stop order reached it: take back instead.
                    undo(task, &steps)
                } else {
                    advance(&steps)
                };
                Decision::Move {
                    to,
                    finished: true,
                    next,
                }
            }
            StepPhase::Compensate => Decision::Move {
                to: StepStatus::Compensated,
                finished: true,
                next: undo(task, &after(StepStatus::Compensated)),
            },
        },
        Event::Stopped { started } => {
            // A step stopped midway may have done part of its work: its own compensation
            // (idempotent, as every step's) takes that back first.
            let undo_it = started && step.undoable;
            let to = if undo_it {
                StepStatus::Compensating
            } else {
                StepStatus::Error
            };
            let next = match phase {
                StepPhase::Compensate => Next::Wait,
                StepPhase::Run if undo_it => Next::Send {
                    step: step_id,
                    phase: StepPhase::Compensate,
                },
                StepPhase::Run => undo(task, &after(to)),
            };
            Decision::Move {
                to,
                finished: !undo_it,
                next,
            }
        }
        Event::Failed => Decision::Move {
            to: StepStatus::Error,
            finished: true,
            next: undo(task, &after(StepStatus::Error)),
        },
    }
}

/// What a cancel asked for while a task runs does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelAction {
    /// A step is being taken back already: the task ends `cancelled` when that is done.
    Wait,
    /// Order the workers to stop this running step; its `Stopped` (or result) moves on.
    Stop(Uuid),
    /// Nobody consumes this running step's queue: no worker has it; give it up at once
    /// (the step fails, then the done steps are taken back).
    Abandon(Uuid),
    /// No step is live: take back the done ones and end.
    Undo,
}

/// The decision on a cancel of a processing task, from its steps' statuses and the
/// consumers of the queue of its running step (`None`: the broker did not say).
pub fn cancel_action(steps: &[StepState], consumers: Option<u32>) -> CancelAction {
    if steps.iter().any(|s| s.status == StepStatus::Compensating) {
        return CancelAction::Wait;
    }
    match steps.iter().find(|s| s.status == StepStatus::Running) {
        Some(s) if consumers == Some(0) => CancelAction::Abandon(s.id),
        Some(s) => CancelAction::Stop(s.id),
        None => CancelAction::Undo,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepStatus::*;

    const RUNNING_TASK: TaskState = TaskState {
        status: TaskStatus::Processing,
        cancel_requested: false,
    };
    const CANCELLING: TaskState = TaskState {
        status: TaskStatus::Processing,
        cancel_requested: true,
    };

    /// Steps 1..n with these statuses, every one undoable unless listed in `final_steps`.
    fn plan(statuses: &[StepStatus], final_steps: &[usize]) -> Vec<StepState> {
        statuses
            .iter()
            .enumerate()
            .map(|(i, s)| StepState {
                id: Uuid::from_u128(i as u128 + 1),
                status: *s,
                undoable: !final_steps.contains(&(i + 1)),
            })
            .collect()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    const OK: Event = Event::Succeeded { warning: false };
    const RUN: StepPhase = StepPhase::Run;
    const UNDO: StepPhase = StepPhase::Compensate;

    fn next_of(d: Decision) -> Next {
        match d {
            Decision::Move { next, .. } => next,
            other => panic!("{other:?}"),
        }
    }

    fn moved(to: StepStatus, finished: bool, next: Next) -> Decision {
        Decision::Move { to, finished, next }
    }

    fn send(n: u128, phase: StepPhase) -> Next {
        Next::Send { step: id(n), phase }
    }

    #[test]
    fn a_new_plan_sends_its_first_step_and_an_empty_one_ends_at_once() {
        assert_eq!(advance(&plan(&[Pending, Pending], &[])), send(1, RUN));
        assert_eq!(advance(&[]), Next::Finish(TaskStatus::Success));
    }

    #[test]
    fn a_success_sends_the_next_step_and_the_last_one_ends_the_task() {
        let steps = plan(&[Running, Pending], &[]);
        let d = decide(RUNNING_TASK, &steps, id(1), RUN, OK);
        assert_eq!(d, moved(Success, true, send(2, RUN)));
        let steps = plan(&[Success, Running], &[]);
        let d = decide(RUNNING_TASK, &steps, id(2), RUN, OK);
        assert_eq!(next_of(d), Next::Finish(TaskStatus::Success));
    }

    #[test]
    fn a_warning_in_any_step_ends_the_task_with_a_warning() {
        let steps = plan(&[Running, Pending], &[]);
        let d = decide(
            RUNNING_TASK,
            &steps,
            id(1),
            RUN,
            Event::Succeeded { warning: true },
        );
        assert!(matches!(d, Decision::Move { to: Warning, .. }));
        let steps = plan(&[Warning, Running], &[]);
        let d = decide(RUNNING_TASK, &steps, id(2), RUN, OK);
        assert_eq!(next_of(d), Next::Finish(TaskStatus::Warning));
    }

    #[test]
    fn a_redelivered_or_late_result_is_ignored() {
        for status in [Success, Warning, Error, Compensated, Pending, Compensating] {
            let steps = plan(&[status, Pending], &[]);
            for ev in [OK, Event::Failed, Event::Stopped { started: true }] {
                assert_eq!(
                    decide(RUNNING_TASK, &steps, id(1), RUN, ev),
                    Decision::Ignore,
                    "{status:?} {ev:?}"
                );
            }
        }
        // A compensation's result for a step not being taken back, too.
        let steps = plan(&[Compensated], &[]);
        assert_eq!(
            decide(CANCELLING, &steps, id(1), UNDO, OK),
            Decision::Ignore
        );
        // An event for a step of another plan.
        assert_eq!(
            decide(RUNNING_TASK, &steps, id(9), RUN, Event::Failed),
            Decision::Ignore
        );
    }

    #[test]
    fn progress_and_retries_are_recorded_only_for_live_steps() {
        let steps = plan(&[Running, Compensating, Success], &[]);
        for ev in [Event::Progress, Event::Retrying] {
            assert_eq!(
                decide(RUNNING_TASK, &steps, id(1), RUN, ev),
                Decision::Record
            );
            assert_eq!(
                decide(RUNNING_TASK, &steps, id(2), UNDO, ev),
                Decision::Record
            );
            assert_eq!(
                decide(RUNNING_TASK, &steps, id(3), RUN, ev),
                Decision::Ignore
            );
        }
    }

    #[test]
    fn a_failure_takes_back_the_done_steps_newest_first_then_ends_in_error() {
        // Step 2 is final (no undo): it is passed over.
        let steps = plan(&[Success, Success, Success, Running, Pending], &[2]);
        let d = decide(RUNNING_TASK, &steps, id(4), RUN, Event::Failed);
        assert_eq!(d, moved(Error, true, send(3, UNDO)));
        // Step 3 taken back: step 1 next (2 has nothing to take back).
        let steps = plan(&[Success, Success, Compensating, Error, Pending], &[2]);
        let d = decide(RUNNING_TASK, &steps, id(3), UNDO, OK);
        assert_eq!(d, moved(Compensated, true, send(1, UNDO)));
        let steps = plan(&[Compensating, Success, Compensated, Error, Pending], &[2]);
        let d = decide(RUNNING_TASK, &steps, id(1), UNDO, OK);
        assert_eq!(next_of(d), Next::Finish(TaskStatus::Error));
    }

    #[test]
    fn a_compensation_that_fails_for_good_does_not_stop_the_others() {
        let steps = plan(&[Success, Compensating, Error], &[]);
        let d = decide(RUNNING_TASK, &steps, id(2), UNDO, Event::Failed);
        assert_eq!(d, moved(Error, true, send(1, UNDO)));
    }

    #[test]
    fn a_step_that_times_out_or_finds_no_worker_fails_like_any_other() {
        // The worker reports a step past its time limit as a permanent failure, and the
        // broker dead-letters a step nobody took: both reach here as `Failed`.
        let steps = plan(&[Running], &[]);
        assert_eq!(
            decide(RUNNING_TASK, &steps, id(1), RUN, Event::Failed),
            moved(Error, true, Next::Finish(TaskStatus::Error))
        );
    }

    #[test]
    fn a_cancel_stops_the_running_step_and_takes_back_what_was_done() {
        let steps = plan(&[Success, Running, Pending], &[]);
        assert_eq!(cancel_action(&steps, Some(1)), CancelAction::Stop(id(2)));
        // The broker did not say: stop it anyway (a worker may have it).
        assert_eq!(cancel_action(&steps, None), CancelAction::Stop(id(2)));
        // Nobody consumes its queue: give it up.
        assert_eq!(cancel_action(&steps, Some(0)), CancelAction::Abandon(id(2)));
        // Stopped before it started: it fails, step 1 is taken back, the task is cancelled.
        let d = decide(
            CANCELLING,
            &steps,
            id(2),
            RUN,
            Event::Stopped { started: false },
        );
        assert_eq!(d, moved(Error, true, send(1, UNDO)));
        // Stopped midway: its own compensation first.
        let d = decide(
            CANCELLING,
            &steps,
            id(2),
            RUN,
            Event::Stopped { started: true },
        );
        assert_eq!(d, moved(Compensating, false, send(2, UNDO)));
        // Stopped midway with nothing to take it back: it fails.
        let steps = plan(&[Success, Running, Pending], &[2]);
        let d = decide(
            CANCELLING,
            &steps,
            id(2),
            RUN,
            Event::Stopped { started: true },
        );
        assert!(matches!(
            d,
            Decision::Move {
                to: Error,
                finished: true,
                ..
            }
        ));
        // All taken back: cancelled, not error.
        let steps = plan(&[Compensating, Error, Pending], &[]);
        let d = decide(CANCELLING, &steps, id(1), UNDO, OK);
        assert_eq!(next_of(d), Next::Finish(TaskStatus::Cancelled));
    }

    #[test]
    fn a_step_that_ends_before_its_stop_order_arrives_is_taken_back() {
        let steps = plan(&[Success, Running, Pending], &[]);
        let d = decide(CANCELLING, &steps, id(2), RUN, OK);
        assert_eq!(d, moved(Success, true, send(2, UNDO)));
    }

    #[test]
    fn a_cancel_during_a_taking_back_waits_and_one_with_nothing_live_undoes() {
        assert_eq!(
            cancel_action(&plan(&[Compensating, Error, Pending], &[]), Some(0)),
            CancelAction::Wait
        );
        assert_eq!(
            cancel_action(&plan(&[Success, Pending], &[]), Some(1)),
            CancelAction::Undo
        );
        assert_eq!(
            undo(CANCELLING, &plan(&[Success, Pending], &[])),
            send(1, UNDO)
        );
        assert_eq!(
            undo(CANCELLING, &plan(&[Pending], &[])),
            Next::Finish(TaskStatus::Cancelled)
        );
    }

    #[test]
    fn a_result_for_a_task_that_already_ended_moves_only_its_step() {
        let ended = TaskState {
            status: TaskStatus::Error,
            cancel_requested: false,
        };
        let steps = plan(&[Running, Pending], &[]);
        assert_eq!(
            decide(ended, &steps, id(1), RUN, OK),
            moved(Success, true, Next::Wait)
        );
    }
}
