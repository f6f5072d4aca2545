//! The hosting domain, without I/O: names and their validation, task types and the plans
//! of steps they run. Everything here is unit-tested on its own.

pub mod names;
pub mod tasks;

pub use names::{HostName, NameError, SERVER_MASTER, ServerName};
pub use tasks::{Plan, PlannedStep, SecretNeed, ServerFacts, TaskError, TaskType};
