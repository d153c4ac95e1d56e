//! Wiring: shared state, and [`run`], which serves HTTP and gRPC on listeners
//! it is given until `shutdown` resolves (tests bind port 0 and call it).

use std::future::Future;
use std::sync::Arc;

use cairn_indexer::embed::Embed;
use cairn_indexer::registry::Registry;
use cairn_indexer::store::VectorStore;
use tokio::net::TcpListener;

use crate::code::CodeService;
use crate::search::{RankSettings, SearchService};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub search: SearchService,
    pub code: CodeService,
}

impl AppState {
    pub fn new(embedder: Arc<dyn Embed>, store: Arc<dyn VectorStore>, registry: Registry, rank: RankSettings) -> Self {
        Self {
            code: CodeService::new(registry.clone()),
            search: SearchService::new(embedder, store, registry, rank),
        }
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
    let mcp_shutdown = tokio_util::sync::CancellationToken::new();
    let app = crate::http::router(state.clone(), max_body_bytes).nest_service(
        "/mcp",
        crate::mcp::service(&state, http.local_addr()?, max_body_bytes, mcp_shutdown.clone()),
    );
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
    mcp_shutdown.cancel();
    let _ = tx.send(true);
    http_task.await??;
    grpc_task.await??;
    Ok(())
}
