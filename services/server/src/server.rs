//! Wiring: [`run`], which serves HTTP and gRPC on listeners it is given
//! until `shutdown` resolves (tests bind port 0 and call it), around the
//! shared [`AppState`] (defined in [`cairn_services::state`]).

use std::future::Future;

use crate::tls::TlsConfigExt as _;
use tokio::net::TcpListener;

pub use cairn_services::state::AppState;

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
            tokio::spawn(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<crate::linger::Peer>(),
                )
                .with_graceful_shutdown(http_stop)
                .await
            })
        }
        None => {
            let listener = crate::linger::LingeringListener(http);
            tokio::spawn(async move {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<crate::linger::Peer>(),
                )
                .with_graceful_shutdown(http_stop)
                .await
            })
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
