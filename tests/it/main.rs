//! Integration tests: one binary, a module per area (every test binary links DataFusion again).

mod actions;
mod adjust;
mod calendar;
mod cli;
mod common;
mod crash;
mod damage;
mod delta_log;
mod delta_readers;
mod errors;
mod failures;
mod hostile;
mod http_hardening;
mod live;
mod pruning;
mod s3;
mod scheduler;
mod server;
mod split_scenario;
mod sql;
mod store;
mod sync;
mod time_travel;
mod timeframe;
