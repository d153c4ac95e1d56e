//! Wiring: shared state, and [`run`], which serves HTTP and gRPC on listeners
//! it is given until `shutdown` resolves (tests bind port 0 and call it).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use cairn_indexer::embed::Embed;
use cairn_indexer::registry::Registry;
use cairn_indexer::store::VectorStore;
use tokio::net::TcpListener;

use crate::audit::{AuditEvent, AuditLog, AuditResult, Decision};
use crate::error::ServiceError;
use crate::search::{RankSettings, SearchRequest, SearchResponse, SearchService};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub search: SearchService,
    pub audit: Arc<AuditLog>,
}

impl AppState {
    /// State without an audit log (see [`AppState::with_audit`]).
    pub fn new(embedder: Arc<dyn Embed>, store: Arc<dyn VectorStore>, registry: Registry, rank: RankSettings) -> Self {
        Self {
            search: SearchService::new(embedder, store, registry, rank),
            audit: Arc::new(AuditLog::disabled()),
        }
    }

    /// Records every request in `audit`.
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = audit;
        self
    }

    /// Audits one search on `surface`: what was asked, which repos it could
    /// read, which chunks (and commits) went back, and how it ended.
    pub fn audit_search(
        &self,
        surface: &'static str,
        request: &SearchRequest,
        result: &Result<SearchResponse, ServiceError>,
        started: Instant,
    ) {
        // No authentication yet: the principal is anonymous and may read
        // every indexed repo it names (all of them when it names none).
        let repos_allowed = if request.repos.is_empty() {
            self.search
                .registry()
                .load()
                .map(|m| m.into_keys().collect())
                .unwrap_or_default()
        } else {
            request.repos.clone()
        };
        let (results, outcome) = match result {
            Ok(r) => (
                r.results
                    .iter()
                    .map(|h| AuditResult {
                        id: h.id.clone(),
                        repo: h.repo.clone(),
                        path: h.path.clone(),
                        commit: h.commit.clone(),
                    })
                    .collect(),
                "ok".to_string(),
            ),
            Err(e) => (Vec::new(), e.kind.as_str().to_string()),
        };
        self.audit.record(AuditEvent {
            principal: "anonymous".into(),
            surface,
            query: Some(request.query.clone()),
            repos_allowed,
            results,
            backend: None,
            model: None,
            decision: Decision::Allow,
            outcome,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        });
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
    let (tx, rx) = tokio::sync::watch::channel(false);
    let app = crate::http::router(state.clone(), max_body_bytes);
    let mut http_rx = rx.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(http, app)
            .with_graceful_shutdown(async move {
                let _ = http_rx.wait_for(|v| *v).await;
            })
            .await
    });

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<cairn_proto::v1::retrieval_server::RetrievalServer<crate::grpc::RetrievalService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cairn_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let mut grpc_rx = rx.clone();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(grpc);
    let grpc_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(crate::grpc::RetrievalService::new(state))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = grpc_rx.wait_for(|v| *v).await;
            }),
    );
    shutdown.await;
    let _ = tx.send(true);
    http_task.await??;
    grpc_task.await??;
    Ok(())
}
