//! `tickvault snapshot create NAME [--version N]`, `snapshot list`, `snapshot delete NAME`.

use clap::{Args, Subcommand};

use crate::Store;
use crate::model::time::rfc3339;

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Pin a table version under NAME (1-64 of A-Z a-z 0-9 . _ -); prints the version pinned.
    /// GC keeps every file it needs until the snapshot is deleted.
    Create {
        name: String,
        /// The version to pin; the latest when left out.
        #[arg(long, value_name = "N")]
        version: Option<u64>,
    },
    /// Every named snapshot: name, version, created (tab-separated), by name.
    List,
    /// Delete a named snapshot (the table is unchanged; GC may then delete what only it kept).
    Delete { name: String },
}

/// Whether the command only reads (the store is then opened read-only).
pub fn is_read_only(args: &SnapshotArgs) -> bool {
    matches!(args.command, SnapshotCommand::List)
}

pub async fn snapshot_cmd(store: &Store, args: SnapshotArgs) -> anyhow::Result<i32> {
    match args.command {
        SnapshotCommand::Create { name, version } => {
            let pinned = store.create_snapshot(&name, version).await?;
            println!("{}", pinned.version);
            eprintln!(
                "snapshot {} pins table version {}",
                pinned.name, pinned.version
            );
        }
        SnapshotCommand::List => {
            for s in store.snapshots().await? {
                println!("{}\t{}\t{}", s.name, s.version, rfc3339(s.created));
            }
        }
        SnapshotCommand::Delete { name } => {
            let deleted = store.delete_snapshot(&name).await?;
            println!(
                "deleted snapshot {} (table version {})",
                deleted.name, deleted.version
            );
        }
    }
    Ok(0)
}
