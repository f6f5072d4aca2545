//! The end-to-end tests, one binary: each module was a test file of its own (each linked the
//! whole berth stack); the set-ups they share are in the crate `berth_tests` (tests/src).
//! Names are `module::test`: `cargo nextest run -p berth-tests -E 'test(/^every_step::/)'`.

mod auth;
mod backups;
mod cancel;
mod cli;
mod cli_sites;
mod clone;
mod compare;
mod crash;
mod cron;
mod db_reach;
mod dns;
mod drills;
mod drupal7;
mod every_step;
mod failures;
mod harness;
mod isolation;
mod limits;
mod metrics_quiet;
mod migrate;
mod offsite;
mod openapi;
mod outbox;
mod pipeline;
mod poison;
mod readyz;
mod recovery;
mod restore;
mod retention;
mod retry;
mod schedules;
mod secrets;
mod site_names;
mod site_patch;
mod sites;
mod small_defects;
mod storefront;
mod suspension;
mod telemetry;
mod tenancy;
mod updatedb;
mod upgrade;
mod usage;
