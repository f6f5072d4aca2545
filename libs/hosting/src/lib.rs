//! The hosting domain, without I/O: names and their validation, what the planner knows of
//! servers, platforms and sites, task requests, the plans of steps tasks run, the effects
//! of finished steps and tasks on the state, and the dispatcher's decisions. Everything
//! here is unit-tested on its own.

pub mod compare;
pub mod drills;
pub mod effects;
pub mod facts;
pub mod flow;
pub mod fresh;
pub mod names;
pub mod offsite;
pub mod plans;
pub mod retention;
pub mod sites;
pub mod tasks;

pub use facts::{PlatformFacts, ServerFacts, SiteFacts};
pub use names::{
    HostName, NameError, PlatformName, SERVER_MASTER, ServerName, SiteName, parse_root,
};
pub use plans::{Plan, PlannedStep};
pub use tasks::{TaskError, TaskType};
