//! [`AppState`]: what every handler shares, and how requests are
//! authenticated. The operations themselves are the facade's
//! ([`crate::facade`]); [`crate::server`] wires the transports around it.

use std::sync::Arc;

use cairn_indexer::embed::Embed;
use cairn_indexer::registry::Registry;
use cairn_indexer::store::VectorStore;

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
    pub hosts: crate::hosts::HostPolicy,
    /// Per-source webhook limits (`[webhooks] per_source_*`).
    pub(crate) webhook_guard: Arc<crate::webhook_guard::WebhookGuard>,
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
            hosts: crate::hosts::HostPolicy::any(),
            webhook_guard: Arc::new(crate::webhook_guard::WebhookGuard::new(&Default::default())),
        }
    }

    /// Answers only requests addressed to `hosts` (`[server] allowed_hosts`).
    pub fn with_hosts(mut self, hosts: crate::hosts::HostPolicy) -> Self {
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
                    // unreadable or not re-read lately: refuse, never honour a revoked token
                    Err(e) => Err(ServiceError::unavailable(format!("token store: {e:#}"))),
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

impl AppState {
    /// Shared state for the transports, over `engine`'s serving store and
    /// registry (here, not in the engine, so the index keeper never sees
    /// the request path).
    pub fn for_engine(engine: &cairn_engine::Engine, config: &crate::config::Config) -> AppState {
        let mut state = AppState::with_serving(
            engine.serving.clone(),
            engine.data.registry(),
            config.search,
            &config.answer,
            &config.backends,
        );
        state.code = state.code.with_rules_file(config.secrets.rules_file());
        state.webhook_guard = Arc::new(crate::webhook_guard::WebhookGuard::new(&config.webhooks));
        state
    }
}

impl AppState {
    /// The answer backends' names (`GET /v1/models`): neither code nor facts
    /// about repos, so no caller.
    pub fn models(&self) -> Vec<String> {
        self.answers.backends()
    }

    /// Writes the record of a request that no operation recorded (the gate's
    /// fallback: a 401, a body that did not parse, an unknown route).
    pub fn record_unrecorded(&self, event: crate::audit::AuditEvent) -> Result<(), crate::audit::Unrecorded> {
        self.audit.record(event)
    }

    /// Whether the audit log takes records: a request must not start when
    /// it does not.
    pub fn audit_available(&self) -> Result<(), crate::audit::Unrecorded> {
        self.audit.available()
    }

    /// Admits a request by `access` on `surface`, or audits the refusal and
    /// returns it.
    pub fn admit(
        &self,
        access: &Access,
        surface: &'static str,
    ) -> Result<crate::limits::Permit, crate::limits::Refusal> {
        self.audit.available().map_err(crate::limits::Refusal::Unrecorded)?;
        self.limits.admit(&access.principal.name).map_err(|refusal| {
            tracing::info!(principal = %access.principal.name, surface, ?refusal, "request over the limits");
            self.audit
                .record(crate::audit::AuditEvent::bare(
                    surface,
                    access,
                    crate::audit::Decision::Deny,
                    crate::error::ServiceErrorKind::TooManyRequests.as_str(),
                    0.0,
                ))
                .err()
                .map_or(refusal, crate::limits::Refusal::Unrecorded)
        })
    }
}
