//! The `cairn` binary, one file per command: `index`, `search`, `serve` and
//! `indexer` (`serve.rs`), `repo`, `config`, `audit`, `token`, `store`, `eval`.

mod audit;
mod config;
mod eval;
mod index;
mod repo;
mod search;
mod serve;
mod store;
mod token;

use std::path::PathBuf;

use cairn_server::telemetry;
use cairn_services::config::Config;
use clap::{Parser, Subcommand};

use audit::AuditCommand;
use config::ConfigCommand;
use repo::RepoCommand;
use serve::Role;
use store::StoreCommand;
use token::TokenCommand;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "On-prem code search: index git repositories, search them by meaning and keywords"
)]
struct Cli {
    /// Configuration file (TOML). Also read from CAIRN_CONFIG; never picked up implicitly.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (index, registry, lock). Overrides the config's data_dir.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Index a git repository (its HEAD tree) or a plain directory.
    Index {
        /// Repository or directory to index.
        path: PathBuf,
        /// Name to file it under; re-indexing the same name replaces it.
        #[arg(long)]
        repo: String,
        /// Groups whose members may read it (comma-separated), besides `admin`. Kept on re-index when omitted; none: admins only.
        #[arg(long, value_name = "A,B")]
        groups: Option<String>,
        /// public | internal | confidential | restricted: answers go only to backends whose max_sensitivity allows it. Kept on re-index when omitted; unset counts as internal.
        #[arg(long, value_name = "LEVEL")]
        sensitivity: Option<String>,
    },
    /// Search the index.
    Search {
        query: String,
        /// Restrict to these repositories (repeatable).
        #[arg(long = "repo", value_name = "NAME")]
        repos: Vec<String>,
        /// Restrict to these languages (repeatable).
        #[arg(long = "language", value_name = "LANG")]
        languages: Vec<String>,
        /// Restrict to paths starting with this prefix.
        #[arg(long)]
        path_prefix: Option<String>,
        /// Number of results (1-100).
        #[arg(short, default_value_t = 10)]
        k: i64,
        /// Print the response as JSON (the HTTP API's shape).
        #[arg(long)]
        json: bool,
    },
    /// Serve the HTTP and gRPC APIs and run the indexer daemon for the config's [[repos]].
    Serve {
        /// HTTP listen address (default 127.0.0.1:7700).
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// gRPC listen address (default 127.0.0.1:7701).
        #[arg(long, value_name = "ADDR")]
        grpc: Option<String>,
        /// Serve searches only, without the indexer daemon: a stateless
        /// retrieval replica of a Qdrant-server deployment (it follows the
        /// repo registry `cairn indexer` publishes), or a read-only server
        /// of an index built with `cairn index`.
        #[arg(long)]
        no_indexer: bool,
    },
    /// Run only the indexer daemon for the [[repos]] in the config, with its
    /// control API (repo status, reindex, webhooks, metrics), for a
    /// Qdrant-server deployment: one active indexer holds a lease in Qdrant,
    /// others stand by. Refused with the embedded store: use `cairn serve`.
    Indexer {
        /// HTTP listen address (default 127.0.0.1:7700).
        #[arg(long, value_name = "ADDR")]
        http: Option<String>,
        /// gRPC listen address (default 127.0.0.1:7701).
        #[arg(long, value_name = "ADDR")]
        grpc: Option<String>,
    },
    /// Indexed repositories.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Audit log tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// API tokens (`[auth] mode = "tokens"`); works while `cairn serve` runs.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Vector store tools: copy between backends, snapshot and restore the embedded store.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Measure retrieval quality on an eval set (corpus/ + queries.jsonl).
    Eval {
        /// Eval directory.
        #[arg(default_value = "../shared/eval/dev")]
        dir: PathBuf,
        /// Reuse an index already in --data-dir instead of building a fresh one in a temporary directory.
        #[arg(long)]
        reuse: bool,
        /// Print metrics as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(d) = &cli.data_dir {
        config.data_dir = d.clone();
    }
    if let Command::Config(ConfigCommand::Check) = cli.command {
        // loading validated it: every problem would have been reported above
        let source = cli
            .config
            .clone()
            .or_else(|| std::env::var_os("CAIRN_CONFIG").map(PathBuf::from));
        match source {
            Some(f) => println!("config ok: {}", f.display()),
            None => println!("config ok: defaults and CAIRN_* environment (no --config / CAIRN_CONFIG)"),
        }
        return std::process::ExitCode::SUCCESS;
    }
    if let Command::Audit(AuditCommand::Verify {
        files,
        public_key,
        anchor,
        open_tail,
    }) = &cli.command
    {
        let anchor = anchor.clone().or_else(|| {
            let configured = &config.audit.anchor_path;
            (!configured.as_os_str().is_empty()).then(|| configured.clone())
        });
        return audit::verify(files, public_key.as_deref(), anchor, *open_tail);
    }
    telemetry::init(&config.log);
    for var in &config.ignored_env {
        tracing::debug!(variable = %var, "ignored: not a configuration key (setup or Kubernetes service link)");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config, cli.data_dir.is_some())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config, data_dir_given: bool) -> anyhow::Result<()> {
    match command {
        Command::Index {
            path,
            repo,
            groups,
            sensitivity,
        } => index::run(config, path, repo, groups, sensitivity).await,
        Command::Search {
            query,
            repos,
            languages,
            path_prefix,
            k,
            json,
        } => search::run(config, query, repos, languages, path_prefix, k, json).await,
        Command::Serve { http, grpc, no_indexer } => {
            let role = if no_indexer { Role::Replica } else { Role::Both };
            serve::run(config, http, grpc, role).await
        }
        Command::Indexer { http, grpc } => serve::run(config, http, grpc, Role::Indexer).await,
        Command::Store(cmd) => store::run(cmd, &config).await,
        Command::Repo(cmd) => repo::run(cmd, config).await,
        Command::Token(cmd) => token::run(cmd, config).await,
        // answered in main, before logging starts
        Command::Config(ConfigCommand::Check) | Command::Audit(_) => Ok(()),
        Command::Eval { dir, reuse, json } => eval::run(&dir, reuse, json, config, data_dir_given).await,
    }
}

/// The audit log for the admin record of a CLI action (`token.create`,
/// `repo.remove`, …), in the same chain `cairn serve` writes, whether it
/// runs or not. It is opened before the action (an unwritable log stops the
/// command before anything changes) and the record written after it, on
/// success and failure alike, with the outcome; when the record cannot be
/// written the command fails even though the action was done, so no admin
/// action passes unrecorded. Invalid arguments, refused before anything is
/// attempted, are not recorded.
fn admin_log(config: &Config) -> anyhow::Result<cairn_services::audit::AdminLog> {
    cairn_services::audit::AdminLog::open(&config.audit, &config.data_dir)
}
