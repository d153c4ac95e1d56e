//! `cairn store copy | snapshot | restore`.

use std::path::PathBuf;

use cairn_services::audit;
use cairn_services::config::Config;
use clap::Subcommand;

use crate::admin_log;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Copy every point (vectors included) from one store to another without re-embedding.
    Copy {
        /// Source: edge:DATA_DIR or qdrant:URL[#collection].
        #[arg(long)]
        from: String,
        /// Target: edge:DATA_DIR or qdrant:URL[#collection] (created if missing).
        #[arg(long)]
        to: String,
    },
    /// Copy the embedded store, repo registry, token store and audit keys of the data dir into a new directory (stop `cairn serve` first).
    Snapshot {
        /// Directory to create.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Check a snapshot's hashes, then copy it into the data dir.
    Restore {
        /// Snapshot directory (made by `cairn store snapshot`).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// Replace the data dir's store, registry and tokens if it has them.
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(cmd: StoreCommand, config: &Config) -> anyhow::Result<()> {
    use cairn_services::store_admin::{self, Endpoint};
    match cmd {
        StoreCommand::Copy { from, to } => {
            let event = audit::AdminEvent::new("store.copy", &to).detail("from", &from);
            let from: Endpoint = from.parse()?;
            let to: Endpoint = to.parse()?;
            let mut admin = admin_log(config)?;
            let copied = async {
                // vectors must have the configured model's dimension
                let embedder = cairn_engine::engine::load_embedder(config)?;
                store_admin::copy(&from, &to, config, cairn_indexer::embed::Embed::dim(&embedder)).await
            }
            .await;
            let event = match &copied {
                Ok(report) => event.detail("points", report.points),
                Err(_) => event,
            };
            let report = admin.finish(event, copied)?;
            println!("copied {} points", report.points);
            Ok(())
        }
        StoreCommand::Snapshot { out } => {
            if config.store.kind == cairn_services::store_config::StoreKind::Qdrant {
                anyhow::bail!(
                    "[store] kind = \"qdrant\": take snapshots with Qdrant's own snapshot API \
                     (POST /collections/{}/snapshots); `cairn store snapshot` backs up the embedded store",
                    config.store.collection
                );
            }
            let mut admin = admin_log(config)?;
            let taken = cairn_indexer::datadir::DataDir::open(&config.data_dir, "cairn store snapshot")
                .map_err(anyhow::Error::from)
                .and_then(|data| store_admin::snapshot(&data, &out));
            let event = audit::AdminEvent::new("store.snapshot", out.display().to_string())
                .detail("data_dir", config.data_dir.display().to_string());
            let event = match &taken {
                Ok(m) => event.detail("files", m.files.len()),
                Err(_) => event,
            };
            let m = admin.finish(event, taken)?;
            let bytes: u64 = m.files.iter().map(|f| f.bytes).sum();
            println!(
                "snapshot of {} in {}: {} files, {bytes} bytes",
                config.data_dir.display(),
                out.display(),
                m.files.len()
            );
            Ok(())
        }
        StoreCommand::Restore { from, force } => {
            let restored = cairn_indexer::datadir::DataDir::open(&config.data_dir, "cairn store restore")
                .map_err(anyhow::Error::from)
                .and_then(|data| store_admin::restore(&from, &data, force));
            let event = audit::AdminEvent::new("store.restore", config.data_dir.display().to_string())
                .detail("from", from.display().to_string())
                .detail("force", force);
            let event = match &restored {
                Ok(m) => event.detail("files", m.files.len()),
                Err(_) => event,
            };
            // audited after the restore, which may bring the audit signing key
            let m = audit::AdminLog::open_and_finish(&config.audit, &config.data_dir, event, restored)?;
            println!(
                "restored {} files from {} into {}",
                m.files.len(),
                from.display(),
                config.data_dir.display()
            );
            Ok(())
        }
    }
}
