//! Stage 2 of the sync: upstream providers, the symbol registry, the coverage ledger and the
//! backfill that heals gaps by fetching exactly what is missing.

#[cfg(any(test, feature = "test-support"))]
pub mod fake_upstream;
pub mod gaps;
pub mod log;
pub mod provider;
pub mod registry;
pub mod scheduler;
pub mod settings;
pub mod syncer;
pub mod tables;
pub mod upstream;
pub mod validate;
