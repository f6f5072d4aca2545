//! The hosting domain, without I/O: names and their validation, task types and the plans
//! of steps they run. Everything here is unit-tested on its own.

pub mod compare;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod names;
pub mod packages;
pub mod sites;
pub mod tasks;
pub mod zone;

pub use names::{
    HostName, NameError, PlatformName, SERVER_MASTER, ServerName, SiteName, parse_root,
};
pub use tasks::{Plan, PlannedStep, SecretNeed, ServerFacts, TaskError, TaskType};
