//! S3-compatible deployment, proven on a real S3 protocol server (moto_server on loopback):
//! the store conformance suite, start-up checks, failures, request counts, the disk cache, a
//! read-only follower and the binary end to end.

mod actions;
mod conformance;
mod e2e;
mod failures;
pub(crate) mod moto;
mod proxy;
mod requests;
mod snapshots;
