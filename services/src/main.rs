//! The `cairn` binary: `index`, `search`, `serve` (services and the indexer daemon), `indexer`, `repo`, `eval`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use cairn_engine::engine::Engine;
use cairn_indexer::pipeline::Progress;
use cairn_services::audit::{self, AuditLog};
use cairn_services::auth::{self, AuthMode, TokenStore};
use cairn_services::config::{Config, Sensitivity};
use cairn_services::daemon::Daemon;
use cairn_services::metrics::{Metrics, TimedEmbedder};
use cairn_services::search::SearchRequest;
use cairn_services::state::AppState;
use cairn_services::tls::TlsConfigExt as _;
use cairn_services::{eval, server, telemetry};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

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

#[derive(Subcommand)]
enum RepoCommand {
    /// Purge a repo: its points, mirror, cache entries and status (needs the
    /// data dir: while `cairn serve` runs, use `DELETE /v1/repos/{name}`).
    Remove {
        /// The repo's name.
        name: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate the configuration (--config / CAIRN_CONFIG, CAIRN_* env), report every problem, exit 2 if any.
    Check,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed alone on the last line, once (only its hash is stored).
    Create {
        /// Who the token stands for (audit records name it).
        #[arg(long)]
        principal: String,
        /// Groups (comma-separated); `admin` reads every repo.
        #[arg(long, value_name = "A,B", default_value = "")]
        groups: String,
        /// public | internal | confidential | restricted: the most sensitive
        /// repos the token reads, on every surface. Default: no cap.
        #[arg(long, value_name = "LEVEL")]
        max_sensitivity: Option<String>,
    },
    /// Revoke a token by id, or every token of a principal; applies to the next request.
    Revoke {
        /// Token id (`tok_…`, see `cairn token list`) or principal name.
        id_or_principal: String,
    },
    /// List tokens (ids, principals, groups, created, clearance; never the tokens).
    List,
}

#[derive(Subcommand)]
enum StoreCommand {
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

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain through audit log files (oldest first) and, given the public key, every checkpoint's signature; report the first modified, deleted, inserted or reordered record and exit 1.
    Verify {
        /// Audit log files, oldest first (rotated FILE.000001, FILE.000002, ..., then FILE).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The ed25519 public key: 64 hex digits, or a file holding them (audit/signing-key.pub in the data dir).
        #[arg(long, value_name = "HEX|FILE")]
        public_key: Option<String>,
    },
}

async fn store_command(cmd: StoreCommand, config: &Config) -> anyhow::Result<()> {
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
    if let Command::Audit(AuditCommand::Verify { files, public_key }) = &cli.command {
        return audit_verify(files, public_key.as_deref());
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
        } => {
            cairn_engine::engine::validate_repo_name(&repo)?;
            let groups = groups.as_deref().map(auth::parse_groups).transpose()?;
            let sensitivity = sensitivity
                .as_deref()
                .map(|s| {
                    Sensitivity::parse(s).with_context(|| {
                        format!("invalid --sensitivity {s:?}: use public, internal, confidential or restricted")
                    })
                })
                .transpose()?;
            let mut engine = Engine::open(&config, "cairn index")?;
            // the model changed since the last index: rebuild the others first
            engine.finish_migration(&config).await?;
            let bar = Bar::new();
            let run = engine.index_run(&path, &repo, &config, &bar).await?;
            let report = &run.index;
            bar.0.finish_and_clear();
            // access changes are admin actions: audited (see admin_log)
            if let Some(groups) = groups {
                let mut admin = admin_log(&config)?;
                let before = engine.data.registry().load()?.get(&repo).map(|r| r.groups.clone());
                let event = audit::AdminEvent::new("repo.groups", &repo)
                    .detail("groups", &groups)
                    .detail("previous", before);
                admin.finish(event, engine.set_groups(&repo, groups))?;
            }
            if let Some(s) = sensitivity {
                let mut admin = admin_log(&config)?;
                let before = engine.data.registry().load()?.get(&repo).map(|r| r.sensitivity.clone());
                let event = audit::AdminEvent::new("repo.sensitivity", &repo)
                    .detail("sensitivity", s)
                    .detail("previous", before);
                admin.finish(event, engine.set_sensitivity(&repo, s))?;
            }
            let skipped: Vec<String> = report
                .skipped
                .iter()
                .map(|(r, n)| format!("{} {n}", r.as_str()))
                .collect();
            println!(
                "indexed {repo}{}: {} files, {} chunks, {} tokens embedded, skipped: {} in {:.1}s",
                if report.commit.is_empty() {
                    String::new()
                } else {
                    format!(" @ {}", &report.commit[..12.min(report.commit.len())])
                },
                report.files,
                report.chunks,
                report.tokens,
                if skipped.is_empty() {
                    "none".to_string()
                } else {
                    skipped.join(", ")
                },
                report.seconds
            );
            println!(
                "{}: {} files changed, {} chunks embedded, {} reused (embedding cache or stored points)",
                if run.full { "full build" } else { "incremental" },
                run.files_changed,
                run.chunks_embedded,
                run.chunks_reused
            );
            println!("secrets redacted: {}", secrets_summary(report));
            Ok(())
        }
        Command::Search {
            query,
            repos,
            languages,
            path_prefix,
            k,
            json,
        } => {
            let engine = Engine::open(&config, "cairn search")?;
            let state = AppState::for_engine(&engine, &config);
            let resp = state
                .search(
                    &cairn_services::facade::Caller::local("cli.search"),
                    SearchRequest {
                        query,
                        k,
                        repos,
                        languages,
                        path_prefix,
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&resp)?);
            } else {
                for (i, h) in resp.results.iter().enumerate() {
                    println!(
                        "{:>2}. {:.4}  {}/{}#L{}-L{}  {} {}",
                        i + 1,
                        h.score,
                        h.repo,
                        h.path,
                        h.start_line,
                        h.end_line,
                        h.kind,
                        h.symbol.as_deref().unwrap_or("")
                    );
                    for line in h.content.lines().take(3) {
                        println!("      {line}");
                    }
                }
                println!("({} results in {:.1} ms)", resp.results.len(), resp.took_ms);
            }
            Ok(())
        }
        Command::Serve { http, grpc, no_indexer } => {
            let role = if no_indexer { Role::Replica } else { Role::Both };
            run_server(config, http, grpc, role).await
        }
        Command::Indexer { http, grpc } => run_server(config, http, grpc, Role::Indexer).await,
        Command::Store(cmd) => store_command(cmd, &config).await,
        Command::Repo(RepoCommand::Remove { name }) => {
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
        // answered in main, before logging starts
        Command::Config(ConfigCommand::Check) | Command::Audit(_) => Ok(()),
        Command::Token(cmd) => {
            let store = TokenStore::new(&config.data_dir);
            match cmd {
                TokenCommand::Create {
                    principal,
                    groups,
                    max_sensitivity,
                } => {
                    let groups = auth::parse_groups(&groups)?;
                    let max_sensitivity = max_sensitivity.as_deref().map(parse_sensitivity).transpose()?;
                    let mut admin = admin_log(&config)?;
                    let created = store.create_capped(&principal, groups.clone(), max_sensitivity);
                    let event = audit::AdminEvent::new("token.create", &principal);
                    let event = match &created {
                        Ok((record, _)) => event.token(record),
                        Err(_) => event
                            .detail("groups", &groups)
                            .detail("max_sensitivity", max_sensitivity),
                    };
                    let (record, token) = admin.finish(event, created)?;
                    println!(
                        "created {} for {} (groups: {}{}); it is shown once:",
                        record.id,
                        record.principal,
                        if record.groups.is_empty() {
                            "none".to_string()
                        } else {
                            record.groups.join(",")
                        },
                        record
                            .max_sensitivity
                            .map(|s| format!("; max sensitivity: {}", s.as_str()))
                            .unwrap_or_default()
                    );
                    println!("{token}");
                }
                TokenCommand::Revoke { id_or_principal } => {
                    let mut admin = admin_log(&config)?;
                    let revoked = store.revoke(&id_or_principal).and_then(|n| match n {
                        0 => Err(anyhow::anyhow!("no token with id or principal {id_or_principal:?}")),
                        n => Ok(n),
                    });
                    let event = audit::AdminEvent::new("token.revoke", &id_or_principal);
                    let event = match &revoked {
                        Ok(n) => event.detail("revoked", n),
                        Err(_) => event,
                    };
                    let n = admin.finish(event, revoked)?;
                    println!("revoked {n} token(s)");
                }
                TokenCommand::List => {
                    for t in store.list()? {
                        // the clearance is the last column: `-` is no cap
                        println!(
                            "{}\t{}\t{}\t{}\t{}",
                            t.id,
                            t.principal,
                            t.groups.join(","),
                            t.created_at,
                            t.max_sensitivity.map_or("-", |s| s.as_str())
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Eval { dir, reuse, json } => run_eval(&dir, reuse, json, config, data_dir_given).await,
    }
}

/// A `--max-sensitivity` value.
fn parse_sensitivity(s: &str) -> anyhow::Result<Sensitivity> {
    Sensitivity::parse(s)
        .with_context(|| format!("invalid --max-sensitivity {s:?}: use public, internal, confidential or restricted"))
}

/// The audit log for the admin record of a CLI action (`token.create`,
/// `repo.remove`, …), in the same chain `cairn serve` writes, whether it
/// runs or not. It is opened before the action (an unwritable log stops the
/// command before anything changes) and the record written after it, on
/// success and failure alike, with the outcome; when the record cannot be
/// written the command fails even though the action was done, so no admin
/// action passes unrecorded. Invalid arguments, refused before anything is
/// attempted, are not recorded.
fn admin_log(config: &Config) -> anyhow::Result<audit::AdminLog> {
    audit::AdminLog::open(&config.audit, &config.data_dir)
}

fn audit_verify(files: &[PathBuf], public_key: Option<&str>) -> std::process::ExitCode {
    let key = match public_key.map(audit::parse_public_key).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    match audit::verify(files, key.as_deref()) {
        Ok(Ok(r)) => {
            println!(
                "audit log ok: {} records{}, {} checkpoints ({}), seq {}..={}{}",
                r.records,
                if r.admin_records > 0 {
                    format!(" ({} admin)", r.admin_records)
                } else {
                    String::new()
                },
                r.checkpoints,
                if key.is_some() {
                    format!("{} signatures verified", r.signatures_checked)
                } else {
                    "signatures not checked: pass --public-key".to_string()
                },
                r.first_seq,
                r.last_seq,
                if r.starts_mid_chain {
                    "; the first file continues an earlier one that was not given"
                } else {
                    ""
                }
            );
            std::process::ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            println!("audit log TAMPERED: {e}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run_eval(dir: &Path, reuse: bool, json: bool, mut config: Config, data_dir_given: bool) -> anyhow::Result<()> {
    let queries = eval::load_queries(dir)?;
    // Without --data-dir the index is built in a temporary directory, removed
    // after the store is closed.
    let tmp = if data_dir_given {
        None
    } else {
        anyhow::ensure!(!reuse, "--reuse needs --data-dir");
        let tmp = std::env::temp_dir().join(format!("cairn-eval-{}", std::process::id()));
        config.data_dir = tmp.clone();
        Some(tmp)
    };
    let outcome = eval_in(dir, &queries, reuse, json, &config).await;
    if let Some(tmp) = tmp {
        let _ = std::fs::remove_dir_all(tmp);
    }
    outcome
}

async fn eval_in(dir: &Path, queries: &[eval::Query], reuse: bool, json: bool, config: &Config) -> anyhow::Result<()> {
    let mut engine = Engine::open(config, "cairn eval")?;
    engine.finish_migration(config).await?;
    let mut index_s = 0.0;
    let mut chunks = 0;
    if !reuse {
        let corpus = dir.join("corpus");
        let mut repos: Vec<PathBuf> = std::fs::read_dir(&corpus)
            .with_context(|| format!("failed to read {}", corpus.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        repos.sort();
        for repo in repos {
            let name = repo
                .file_name()
                .and_then(|n| n.to_str())
                .context("bad corpus dir name")?
                .to_string();
            let report = engine
                .index(&repo, &name, config, &cairn_indexer::pipeline::NoProgress)
                .await?;
            eprintln!(
                "indexed {name}: {} files, {} chunks in {:.1}s",
                report.files, report.chunks, report.seconds
            );
            index_s += report.seconds;
            chunks += report.chunks;
        }
    }
    let state = AppState::for_engine(&engine, config);
    let started = Instant::now();
    let ranks = eval::run_queries(state.searcher(), queries).await?;
    let query_s = started.elapsed().as_secs_f64();
    let m = eval::metrics(queries, &ranks);
    if json {
        println!(
            "{}",
            serde_json::json!({"system": "cairn", "chunks": chunks, "index_seconds": index_s, "query_seconds": query_s, "metrics": m})
        );
    } else {
        print!("{}", eval::table(&m));
        println!(
            "{} queries in {:.1}s; index {} chunks in {:.1}s",
            queries.len(),
            query_s,
            chunks,
            index_s
        );
    }
    Ok(())
}

/// Starts the indexer daemon over `engine` for `config.repos`; it stops
/// when `shutdown` is cancelled.
async fn start_daemon(engine: &Engine, config: &Config, shutdown: CancellationToken) -> anyhow::Result<Daemon> {
    let metrics = Arc::new(Metrics::default());
    let timed = |mut indexer: cairn_indexer::repo::RepoIndexer| {
        indexer.embedder = Arc::new(TimedEmbedder {
            inner: indexer.embedder.clone(),
            metrics: metrics.clone(),
        });
        indexer
    };
    let indexer = timed(engine.repo_indexer(config));
    let pending = cairn_services::daemon::PendingSwitch::of(engine, config, timed);
    let daemon = Daemon::start_with(indexer, pending, config, metrics.clone(), shutdown).await?;
    if !config.repos.is_empty() {
        tracing::info!(
            repos = config.repos.len(),
            concurrency = config.indexer.concurrency,
            "indexer daemon started"
        );
    }
    Ok(daemon)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

/// A terminal progress bar over files (hidden when stderr is not a terminal).
/// `github-token 1, private-key 2`, `none`, or `off (index.redact_secrets = false)`.
fn secrets_summary(report: &cairn_indexer::pipeline::IndexReport) -> String {
    if !report.redact_secrets {
        return "off (index.redact_secrets = false)".into();
    }
    if report.secrets.is_empty() {
        return "none".into();
    }
    report
        .secrets
        .iter()
        .map(|(rule, n)| format!("{rule} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Bar(indicatif::ProgressBar);

impl Bar {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files, {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self(bar)
    }
}

impl cairn_indexer::repo::RunProgress for Bar {}

impl Progress for Bar {
    fn start(&self, files: usize) {
        self.0.set_length(files as u64);
    }

    fn advance(&self, files_done: usize, chunks_done: usize) {
        self.0.set_position(files_done as u64);
        self.0.set_message(format!("{chunks_done} chunks"));
    }
}

/// Which parts of cairn this process runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// `cairn serve`: the services and the indexer daemon.
    Both,
    /// `cairn serve --no-indexer`: the services only.
    Replica,
    /// `cairn indexer`: the daemon (holding the lease) and its control API.
    Indexer,
}

async fn run_server(mut config: Config, http: Option<String>, grpc: Option<String>, role: Role) -> anyhow::Result<()> {
    use cairn_indexer::store::meta::{MetaStore, QdrantMeta};
    use cairn_services::roles;
    use cairn_services::store_config::StoreKind;

    if let Some(h) = http {
        config.server.http = h;
    }
    if let Some(g) = grpc {
        config.server.grpc = g;
    }
    config.validate()?;
    if config.server.tls.enabled() {
        // unreadable or mismatched files: a clear error before anything starts
        config.server.tls.server_config(&[])?;
    }
    if role == Role::Indexer && config.store.kind == StoreKind::Edge {
        anyhow::bail!(
            "`cairn indexer` runs only the indexer, for deployments with a Qdrant server; with the embedded \
             store the index in {} can be open in one process at a time, so searches and indexing must share \
             it: run `cairn serve --config FILE`, which runs the daemon and the services together",
            config.data_dir.display()
        );
    }
    // split roles share the registry and the lease through the Qdrant server
    let meta: Option<Arc<dyn MetaStore>> = match (role, config.store.kind) {
        (Role::Replica | Role::Indexer, StoreKind::Qdrant) => {
            Some(Arc::new(QdrantMeta::new(config.store.qdrant_settings())?))
        }
        _ => None,
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal.cancel();
    });
    // what the lease holder published when it claimed the registry
    let mut claimed = None;
    let lease = match (&meta, role) {
        (Some(meta), Role::Indexer) => {
            let lease = roles::Lease::new(meta.clone(), config.indexer.lease_ttl());
            tracing::info!(holder = %lease.holder, store = %meta.describe(), "taking the indexer lease");
            if !lease.acquire(&shutdown).await? {
                tracing::info!("stopped while standing by");
                return Ok(());
            }
            tracing::info!(holder = %lease.holder, "holding the indexer lease");
            match roles::seed(meta.as_ref(), &config.data_dir).await {
                Ok(roles::Seeded::Adopted { fresh }) => tracing::warn!(
                    fresh,
                    "took the published repo registry and generation (the data dir was {}); \
                     each repo's next run rebuilds it, reusing the vectors already stored in Qdrant",
                    if fresh { "empty" } else { "behind them" }
                ),
                Ok(_) => {}
                Err(e) => anyhow::bail!("cannot read the published repo registry: {e:#}"),
            }
            // claim the registry before the first run writes anything, so a
            // former holder's data dir learns at its next start that it is behind
            let claim = roles::publish(
                meta.as_ref(),
                &config.data_dir,
                &lease.holder,
                lease.expires_at_ms(),
                &mut claimed,
            )
            .await;
            if let Ok(roles::Publication::Refused { holder }) = claim {
                anyhow::bail!("{holder} published the repo registry while this indexer took the lease; stopping");
            }
            claim.map_err(|e| anyhow::anyhow!("cannot publish the repo registry: {e:#}"))?;
            Some(Arc::new(lease))
        }
        _ => None,
    };
    let mut mirrored = None;
    if let (Some(meta), Role::Replica) = (&meta, role) {
        // the indexer's registry and generation before the store is opened
        match roles::mirror(meta.as_ref(), &config.data_dir, &mut mirrored).await {
            Ok(Some(_)) => tracing::info!(store = %meta.describe(), "mirrored the published repo registry"),
            Ok(None) => tracing::warn!(
                store = %meta.describe(),
                "no indexer has published a repo registry yet: searches find nothing until `cairn indexer` runs"
            ),
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                "cannot read the published repo registry; serving the last copy, retrying in the background"
            ),
        }
    }
    let engine = Arc::new(Engine::open(
        &config,
        if role == Role::Indexer {
            "cairn indexer"
        } else {
            "cairn serve"
        },
    )?);
    let http = tokio::net::TcpListener::bind(&config.server.http)
        .await
        .with_context(|| format!("failed to listen on {}", config.server.http))?;
    let grpc = tokio::net::TcpListener::bind(&config.server.grpc)
        .await
        .with_context(|| format!("failed to listen on {}", config.server.grpc))?;
    let http_addr = http.local_addr()?;
    let grpc_addr = grpc.local_addr()?;
    tracing::info!(http = %http_addr, grpc = %grpc_addr, role = ?role, "serving");
    let scheme = if config.server.tls.enabled() { "https" } else { "http" };
    println!("cairn is serving HTTP on {scheme}://{http_addr} and gRPC on {grpc_addr}");
    println!(
        "try:\n  curl -s http://{http_addr}/v1/search -H 'content-type: application/json' -d '{{\"query\": \"how are chunks embedded\", \"k\": 3}}'"
    );
    if !config.backends.is_empty() {
        println!(
            "  curl -sN http://{http_addr}/v1/answer -H 'content-type: application/json' -d '{{\"query\": \"how are chunks embedded?\"}}'"
        );
    }
    match config.auth.mode {
        AuthMode::None if !auth::loopback_only(&[http_addr, grpc_addr]) => anyhow::bail!(
            "auth.mode = \"none\" is allowed only on loopback addresses (listening on {http_addr} and {grpc_addr}); \
             set [auth] mode = \"tokens\" and create tokens with `cairn token create`"
        ),
        AuthMode::None => tracing::warn!(
            "authentication is OFF (auth.mode = \"none\"): every local process can read every indexed repo"
        ),
        AuthMode::Tokens => tracing::info!("authentication: API tokens"),
        AuthMode::Oidc => {
            tracing::info!(issuer = %config.auth.oidc.issuer, "authentication: OIDC bearer tokens")
        }
    }
    let oidc = match config.auth.mode {
        AuthMode::Oidc => Some(Arc::new(
            cairn_services::oidc::OidcVerifier::new(config.auth.oidc.clone()).await?,
        )),
        _ => None,
    };
    let tokens = Arc::new(TokenStore::new(&config.data_dir));
    let audit = Arc::new(AuditLog::open(&config.audit, &config.data_dir)?);
    let daemon = match role {
        Role::Replica => {
            tracing::info!("no indexer daemon in this process (--no-indexer): repo status and reindex answer 503");
            None
        }
        Role::Both | Role::Indexer => Some(start_daemon(&engine, &config, shutdown.clone()).await?),
    };
    let state = AppState::for_engine(&engine, &config)
        .with_audit(audit.clone())
        .with_auth(config.auth.mode, tokens)
        .with_none_clearance(config.auth.none_max_sensitivity)
        .with_hosts(cairn_services::gate::HostPolicy::new(
            &config.server.allowed_hosts,
            http_addr,
        ))
        .with_limits(config.limits.clone());
    let state = match &daemon {
        Some(d) => state.with_daemon(d.clone(), config.webhooks.secrets.clone()),
        None => state,
    };
    let state = match oidc {
        Some(verifier) => state.with_oidc(verifier),
        None => state,
    };
    // the shared registry: published by the lease holder, mirrored by
    // replicas; the task ends with what it last published and, when another
    // indexer took the lease, who did
    let sharing = meta.clone().map(|meta| {
        let (engine, config, shutdown, lease) = (engine.clone(), config.clone(), shutdown.clone(), lease.clone());
        let renew_every = config.indexer.lease_ttl() / 3;
        let mut following = engine.generation.name.clone();
        tokio::spawn(async move {
            let mut published = claimed;
            let mut renewed = std::time::Instant::now();
            // the holder published when it claimed the registry, and a
            // replica mirrored before opening the store: the first round waits
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(roles::MIRROR_EVERY) => {}
                }
                if let Some(lease) = &lease {
                    if renewed.elapsed() >= renew_every {
                        match lease.renew().await {
                            Ok(None) => renewed = std::time::Instant::now(),
                            Ok(Some(other)) => {
                                tracing::error!(holder = %other.holder, "another indexer took the lease: stopping");
                                shutdown.cancel();
                                return (published, Some(other.holder));
                            }
                            Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot renew the indexer lease; retrying"),
                        }
                    }
                    match roles::publish(meta.as_ref(), &config.data_dir, &lease.holder, lease.expires_at_ms(), &mut published).await {
                        Ok(roles::Publication::Refused { holder }) => {
                            tracing::error!(holder = %holder, "another indexer published the repo registry: stopping");
                            shutdown.cancel();
                            return (published, Some(holder));
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot publish the repo registry; retrying"),
                    }
                } else {
                    match roles::mirror(meta.as_ref(), &config.data_dir, &mut mirrored).await {
                        Ok(Some(doc)) => {
                            if let Some(g) = doc.generation.filter(|g| g.name != following) {
                                match engine.follow(&config, &g) {
                                    Ok(()) => following = g.name,
                                    Err(e) => tracing::error!(error = %format!("{e:#}"), generation = %g.name, "cannot follow the published generation"),
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot read the published repo registry; retrying"),
                    }
                }
            }
            (published, None)
        })
    });
    let served = server::run_with_tls(
        state,
        http,
        grpc,
        config.server.max_body_bytes,
        &config.server.tls,
        shutdown.clone().cancelled_owned(),
    )
    .await;
    shutdown.cancel();
    // a run in progress finishes (or is abandoned after the grace period)
    if let Some(d) = &daemon {
        d.wait().await;
    }
    let mut lost_to = None;
    if let Some(task) = sharing {
        let (mut published, lost) = task.await.unwrap_or_default();
        if let (Some(meta), Some(lease), None) = (&meta, &lease, &lost) {
            // the last checkpoints, unprotected (expiry 0), then a standby
            // may take over at once
            match roles::publish(meta.as_ref(), &config.data_dir, &lease.holder, 0, &mut published).await {
                Ok(roles::Publication::Refused { holder }) => {
                    tracing::warn!(holder = %holder, "another indexer published the repo registry before this one stopped")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot publish the repo registry at exit"),
            }
            if let Err(e) = lease.release().await {
                tracing::warn!(error = %format!("{e:#}"), "cannot release the indexer lease");
            }
        }
        lost_to = lost;
    }
    // every queued record, and a signed checkpoint, before exit
    audit.close();
    if let Some(other) = lost_to {
        anyhow::bail!("lost the indexer lease to {other}; stopped so that one indexer runs at a time");
    }
    served
}
