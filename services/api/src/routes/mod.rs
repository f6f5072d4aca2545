pub mod dead;
pub mod ops;
pub mod platforms;
pub mod servers;
pub mod sites;
pub mod tasks;
