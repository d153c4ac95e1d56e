//! `cairn repo remove NAME`.

use anyhow::Context;
use cairn_engine::engine::Engine;
use cairn_services::audit;
use cairn_services::config::Config;
use clap::Subcommand;

use crate::admin_log;

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Purge a repo: its points, mirror, cache entries and status (needs the
    /// data dir: while `cairn serve` runs, use `DELETE /v1/repos/{name}`).
    Remove {
        /// The repo's name.
        name: String,
    },
}

pub async fn run(cmd: RepoCommand, config: Config) -> anyhow::Result<()> {
    let RepoCommand::Remove { name } = cmd;
    let mut admin = admin_log(&config)?;
    let removed = async {
        let engine = Engine::open(&config, "cairn repo remove")
            .context("while `cairn serve` runs, remove repos with DELETE /v1/repos/{name}")?;
        let existed = engine.data.registry().load()?.contains_key(&name);
        engine.remove(&name, &config).await?;
        anyhow::Ok(existed)
    }
    .await;
    let event = audit::AdminEvent::new("repo.remove", &name);
    let event = match &removed {
        Ok(existed) => event.detail("existed", existed),
        Err(_) => event,
    };
    let existed = admin.finish(event, removed)?;
    if existed {
        println!("removed {name}");
    } else {
        println!("{name} was not indexed; nothing left of it");
    }
    Ok(())
}
