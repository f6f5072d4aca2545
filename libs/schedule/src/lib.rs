//! Schedules as pure decisions, for the scheduler service and the API that checks them:
//! a cron expression in a time zone and the slots it fires ([`Expression`]), whom a schedule
//! covers and which schedule a site follows ([`Scope`], [`effective`]), what a schedule runs
//! ([`Job`]), and, for one site in one slot, when its run is due and whether it fires now, is
//! skipped, waits for a cap, or was missed ([`Timing`], [`decide`]). No I/O here.

mod expression;
mod firing;
mod job;
mod scope;

pub use berth_contracts::schedule::{Job, Kind, RetentionSpec, RulesSpec};
pub use expression::{Expression, ExpressionError};
pub use firing::{Firing, RunState, Timing, decide, failing_streak, offset, overdue};
pub use job::{JobError, check as check_job};
pub use scope::{Scope, ScopeError, ScopedSchedule, SiteHome, effective, scoped};
