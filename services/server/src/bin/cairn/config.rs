//! `cairn config check`.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Load and validate the configuration (--config / CAIRN_CONFIG, CAIRN_* env), report every problem, exit 2 if any.
    Check,
}
