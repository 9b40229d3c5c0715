//! `tickvault wal`: the write-ahead log's damage report.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::Config;

#[derive(Debug, Args)]
pub struct WalArgs {
    /// The WAL directory [default: the config's `wal_dir`, else `_wal` in a local store].
    #[arg(long, global = true)]
    pub wal_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: WalCommand,
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// List the damaged segments kept aside (exits 1 when there are some).
    Damage,
    /// Clear the damage report once it has been looked at: delete the damaged copies, or move
    /// them elsewhere with --move-to. Their good records are in the log already.
    ClearDamage {
        /// Move the copies into this directory instead of deleting them.
        #[arg(long)]
        move_to: Option<PathBuf>,
    },
}

/// `tickvault wal damage` and `tickvault wal clear-damage`: they touch only the damaged copies,
/// so they are safe beside a running server (whose status shows the report it started with
/// until it restarts).
pub fn wal_cmd(config: &Config, args: WalArgs) -> anyhow::Result<i32> {
    let dir = args.wal_dir.unwrap_or_else(|| config.wal_path());
    match args.command {
        WalCommand::Damage => {
            let report = crate::wal::damage_report(&dir)
                .with_context(|| format!("reading the WAL in {}", dir.display()))?;
            for d in &report {
                println!(
                    "DAMAGED {}: damage at byte offset(s) {:?}, {} good record(s) kept in the log",
                    d.moved_to.display(),
                    d.offsets,
                    d.recovered
                );
            }
            println!(
                "{} damaged WAL segment(s) in {}",
                report.len(),
                dir.display()
            );
            Ok(if report.is_empty() { 0 } else { 1 })
        }
        WalCommand::ClearDamage { move_to } => {
            let cleared = crate::wal::clear_damage(&dir, move_to.as_deref())
                .with_context(|| format!("clearing the damage in {}", dir.display()))?;
            for path in &cleared {
                match &move_to {
                    Some(_) => println!("moved to {}", path.display()),
                    None => println!("deleted {}", path.display()),
                }
            }
            println!("cleared {} damaged WAL segment(s)", cleared.len());
            Ok(0)
        }
    }
}
