//! `cairn serve [--no-indexer]` and `cairn indexer`: the services, the
//! indexer daemon, or both, with the split-roles protocol of a Qdrant-server
//! deployment (the indexer's lease, the replicas' mirror).

use std::sync::Arc;

use anyhow::Context;
use cairn_engine::engine::Engine;
use cairn_server::server;
use cairn_server::tls::TlsConfigExt as _;
use cairn_services::audit::AuditLog;
use cairn_services::auth::{self, AuthMode, TokenStore};
use cairn_services::config::Config;
use cairn_services::daemon::Daemon;
use cairn_services::metrics::{Metrics, TimedEmbedder};
use cairn_services::state::AppState;
use tokio_util::sync::CancellationToken;

/// Which parts of cairn this process runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// `cairn serve`: the services and the indexer daemon.
    Both,
    /// `cairn serve --no-indexer`: the services only.
    Replica,
    /// `cairn indexer`: the daemon (holding the lease) and its control API.
    Indexer,
}

pub async fn run(mut config: Config, http: Option<String>, grpc: Option<String>, role: Role) -> anyhow::Result<()> {
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
        AuthMode::Tokens | AuthMode::Oidc
            if !config.server.tls.enabled() && !auth::loopback_only(&[http_addr, grpc_addr]) =>
        {
            tracing::warn!(
                "bearer tokens will cross the network in clear: listening on {http_addr} and {grpc_addr} without [server.tls]; \
                 enable TLS, or make sure a TLS-terminating proxy or mesh is the only way in"
            );
            if config.auth.mode == AuthMode::Oidc {
                tracing::info!(issuer = %config.auth.oidc.issuer, "authentication: OIDC bearer tokens")
            }
        }
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
    let tokens = Arc::new(match &meta {
        Some(meta) => TokenStore::shared(meta.clone(), &config.data_dir).await?,
        None => TokenStore::for_config(&config).await?,
    });
    if config.auth.mode == AuthMode::Tokens {
        tracing::info!(store = %tokens.describe(), "API tokens");
    }
    TokenStore::keep_fresh(&tokens);
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
        .with_hosts(cairn_server::gate::HostPolicy::new(
            &config.server.allowed_hosts,
            http_addr,
        ))
        .with_limits(match config.auth.mode {
            // every local caller is the one principal "anonymous": a
            // per-principal limit would throttle the machine's one user
            // below what it serves (docs/performance.md, concurrency)
            AuthMode::None => {
                tracing::info!("[limits] are per principal and off in auth.mode = \"none\" (loopback only)");
                cairn_services::limits::LimitsConfig {
                    requests_per_second: 0.0,
                    burst: 0,
                    max_concurrent: 0,
                }
            }
            _ => config.limits.clone(),
        });
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
