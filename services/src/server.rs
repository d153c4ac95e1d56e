//! Wiring: shared state, and [`run`], which serves HTTP and gRPC on listeners
//! it is given until `shutdown` resolves (tests bind port 0 and call it).

use std::future::Future;
use std::sync::Arc;

use cairn_indexer::embed::Embed;
use cairn_indexer::registry::Registry;
use cairn_indexer::store::VectorStore;
use tokio::net::TcpListener;

use crate::answer::AnswerService;
use crate::audit::AuditLog;
use crate::auth::{Access, AuthMode, TokenStore, bearer};
use crate::code::CodeService;
use crate::config::{AnswerConfig, BackendConfig};
use crate::context::ContextService;
use crate::error::ServiceError;
use crate::llm::LlmClient;
use crate::search::{RankSettings, SearchService, Serving};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    // The services behind the facade (crate::facade): transports reach
    // them only through the facade's methods, which take a Caller.
    pub(crate) search: SearchService,
    pub(crate) context: ContextService,
    pub(crate) answers: AnswerService,
    pub(crate) audit: Arc<AuditLog>,
    pub auth: AuthMode,
    pub tokens: Option<Arc<TokenStore>>,
    pub(crate) code: CodeService,
    /// The indexer daemon, when this process runs one (`cairn serve`).
    pub daemon: Option<crate::daemon::Daemon>,
    /// Webhook secrets read from the environment at start-up.
    pub webhook_secrets: crate::config::WebhookSecrets,
    /// Per-principal limits (off unless [`AppState::with_limits`]).
    pub limits: Arc<crate::limits::Limiter>,
    /// The JWT verifier of `auth.mode = "oidc"`.
    pub oidc: Option<Arc<crate::oidc::OidcVerifier>>,
    /// The clearance of callers in `auth.mode = "none"` (`[auth] none_max_sensitivity`).
    pub none_clearance: cairn_indexer::registry::Sensitivity,
    /// The host names HTTP requests may address (see [`crate::gate`]).
    pub hosts: crate::gate::HostPolicy,
}

impl AppState {
    /// State without an audit log (see [`AppState::with_audit`]).
    pub fn new(embedder: Arc<dyn Embed>, store: Arc<dyn VectorStore>, registry: Registry, rank: RankSettings) -> Self {
        Self::with_answers(embedder, store, registry, rank, &AnswerConfig::default(), &[])
    }

    /// State with context assembly settings and LLM backends.
    pub fn with_answers(
        embedder: Arc<dyn Embed>,
        store: Arc<dyn VectorStore>,
        registry: Registry,
        rank: RankSettings,
        answer: &AnswerConfig,
        backends: &[BackendConfig],
    ) -> Self {
        Self::with_serving(Serving::new(embedder, store), registry, rank, answer, backends)
    }

    /// [`AppState::with_answers`] over a shared [`Serving`] pair (which the
    /// indexer daemon replaces when a new generation takes over).
    pub fn with_serving(
        serving: Serving,
        registry: Registry,
        rank: RankSettings,
        answer: &AnswerConfig,
        backends: &[BackendConfig],
    ) -> Self {
        let search = SearchService::with_serving(serving, registry, rank);
        let context = ContextService::new(search.clone(), answer.clone());
        let answers = AnswerService::new(
            context.clone(),
            Arc::new(LlmClient::new(backends)),
            answer.allowed_link_hosts.clone(),
        );
        Self {
            code: CodeService::new(search.clone()),
            search,
            context,
            answers,
            audit: Arc::new(AuditLog::disabled()),
            auth: AuthMode::None,
            tokens: None,
            daemon: None,
            webhook_secrets: crate::config::WebhookSecrets::default(),
            limits: Arc::new(crate::limits::Limiter::off()),
            oidc: None,
            none_clearance: cairn_indexer::registry::Sensitivity::Restricted,
            hosts: crate::gate::HostPolicy::any(),
        }
    }

    /// Answers only requests addressed to `hosts` (`[server] allowed_hosts`).
    pub fn with_hosts(mut self, hosts: crate::gate::HostPolicy) -> Self {
        self.hosts = hosts;
        self
    }

    /// The search service itself, unaudited, for the retrieval eval, which
    /// reads a data dir of its own directly (as `cairn search` does).
    pub fn searcher(&self) -> &SearchService {
        &self.search
    }

    /// Caps callers of `auth.mode = "none"` at `clearance` (unset: no cap).
    pub fn with_none_clearance(mut self, clearance: Option<cairn_indexer::registry::Sensitivity>) -> Self {
        self.none_clearance = clearance.unwrap_or(cairn_indexer::registry::Sensitivity::Restricted);
        self
    }

    /// Authenticates requests with `mode` against `tokens`.
    pub fn with_auth(mut self, mode: AuthMode, tokens: Arc<TokenStore>) -> Self {
        self.auth = mode;
        self.tokens = Some(tokens);
        self
    }

    /// Authenticates requests with OIDC bearer JWTs checked by `verifier`.
    pub fn with_oidc(mut self, verifier: Arc<crate::oidc::OidcVerifier>) -> Self {
        self.auth = AuthMode::Oidc;
        self.oidc = Some(verifier);
        self
    }

    /// [`AppState::authenticate`], and with OIDC a JWKS refresh (rate-limited)
    /// when a token names an unknown key. The transports call this one.
    pub async fn authenticate_async(&self, authorization: Option<&str>) -> Result<Access, ServiceError> {
        match (self.auth, &self.oidc) {
            (AuthMode::Oidc, Some(verifier)) => {
                let token = authorization.and_then(bearer).ok_or_else(|| {
                    ServiceError::unauthenticated("missing credentials: send `Authorization: Bearer <token>`")
                })?;
                verifier
                    .verify_refreshing(token)
                    .await
                    .map(Access::for_principal)
                    .map_err(|e| ServiceError::unauthenticated(e.to_string()))
            }
            _ => self.authenticate(authorization),
        }
    }

    /// What the bearer credential in `authorization` (the header's value)
    /// may read. With `auth.mode = "none"` credentials are ignored.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Access, ServiceError> {
        match self.auth {
            AuthMode::None => Ok(Access::open_with_clearance(self.none_clearance)),
            AuthMode::Oidc => {
                let token = authorization.and_then(bearer).ok_or_else(|| {
                    ServiceError::unauthenticated("missing credentials: send `Authorization: Bearer <token>`")
                })?;
                let verifier = self
                    .oidc
                    .as_ref()
                    .ok_or_else(|| ServiceError::internal("OIDC verifier not configured"))?;
                verifier
                    .verify(token)
                    .map(Access::for_principal)
                    .map_err(|e| ServiceError::unauthenticated(e.to_string()))
            }
            AuthMode::Tokens => {
                let token = authorization.and_then(bearer).ok_or_else(|| {
                    ServiceError::unauthenticated("missing credentials: send `Authorization: Bearer <token>`")
                })?;
                let store = self
                    .tokens
                    .as_ref()
                    .ok_or_else(|| ServiceError::internal("token store not configured"))?;
                match store.authenticate(token) {
                    Ok(Some(principal)) => Ok(Access::for_principal(principal)),
                    Ok(None) => Err(ServiceError::unauthenticated("invalid or revoked token")),
                    Err(e) => Err(ServiceError::internal(format!("token store: {e:#}"))),
                }
            }
        }
    }

    /// Serves the repo API, webhooks and `/metrics` from `daemon`.
    pub fn with_daemon(mut self, daemon: crate::daemon::Daemon, secrets: crate::config::WebhookSecrets) -> Self {
        self.daemon = Some(daemon);
        self.webhook_secrets = secrets;
        self
    }

    /// Applies per-principal `[limits]`.
    pub fn with_limits(mut self, limits: crate::limits::LimitsConfig) -> Self {
        self.limits = Arc::new(crate::limits::Limiter::new(limits));
        self
    }

    /// Records every request in `audit`.
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.answers = self.answers.with_audit(audit.clone());
        self.audit = audit;
        self
    }
}

/// Serves the HTTP API on `http` and gRPC on `grpc` until `shutdown`.
pub async fn run(
    state: AppState,
    http: TcpListener,
    grpc: TcpListener,
    max_body_bytes: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with_tls(
        state,
        http,
        grpc,
        max_body_bytes,
        &crate::tls::TlsConfig::default(),
        shutdown,
    )
    .await
}

/// [`run`], with TLS on both listeners when `tls` is configured (the files
/// are read before anything is served; errors name the key and path).
pub async fn run_with_tls(
    state: AppState,
    http: TcpListener,
    grpc: TcpListener,
    max_body_bytes: usize,
    tls: &crate::tls::TlsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls_configs = if tls.enabled() {
        Some((tls.server_config(&[b"h2", b"http/1.1"])?, tls.server_config(&[b"h2"])?))
    } else {
        None
    };
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mcp_shutdown = tokio_util::sync::CancellationToken::new();
    // /mcp sits behind the same authentication as every other route; its
    // tools read the caller's `Access` from the request
    let mcp = axum::Router::new()
        .nest_service(
            "/mcp",
            crate::mcp::service(&state, max_body_bytes, mcp_shutdown.clone()),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::authenticate,
        ));
    let app = crate::http::router(state.clone(), max_body_bytes)
        .merge(mcp)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::gate::http_gate,
        ))
        .layer(axum::middleware::from_fn(crate::http::close_after_unread_body));
    let mut http_rx = rx.clone();
    let http_stop = async move {
        let _ = http_rx.wait_for(|v| *v).await;
    };
    let http_task = match &tls_configs {
        Some((http_tls, _)) => {
            let listener = crate::tls::TlsListener::new(http, http_tls.clone())?;
            tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(http_stop).await })
        }
        None => {
            let listener = crate::linger::LingeringListener(http);
            tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(http_stop).await })
        }
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<cairn_proto::v1::retrieval_server::RetrievalServer<crate::grpc::RetrievalService>>()
        .await;
    health_reporter
        .set_serving::<cairn_proto::v1::indexer_server::IndexerServer<crate::grpc::IndexerService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cairn_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let mut grpc_rx = rx.clone();
    let grpc_stop = async move {
        let _ = grpc_rx.wait_for(|v| *v).await;
    };
    let routes = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(crate::grpc::RetrievalService::new(state.clone()))
        .add_service(crate::grpc::IndexerService::new(state));
    let grpc_task = match tls_configs {
        Some((_, grpc_tls)) => {
            let incoming = crate::tls::TlsListener::new(grpc, grpc_tls)?.into_incoming();
            tokio::spawn(routes.serve_with_incoming_shutdown(incoming, grpc_stop))
        }
        None => {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
            tokio::spawn(routes.serve_with_incoming_shutdown(incoming, grpc_stop))
        }
    };
    shutdown.await;
    mcp_shutdown.cancel();
    let _ = tx.send(true);
    http_task.await??;
    grpc_task.await??;
    Ok(())
}
