pub mod dead;
pub mod ops;
pub mod servers;
pub mod tasks;
