//! The HTTP handlers of the repo API (`/v1/repos…`), `/metrics` and the
//! push webhooks (`/v1/webhooks/{provider}`): decode, call the facade
//! ([`AppState`]'s repo methods), encode.

use std::time::Instant;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_services::auth::{Access, Principal};
use cairn_services::error::ServiceError;
use cairn_services::facade::Caller;
use cairn_services::repos::Provider;
use cairn_services::state::AppState;
use serde::Deserialize;
use serde_json::json;

/// `GET /v1/repos`.
pub async fn list(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
) -> Result<Response, ServiceError> {
    let (repos, index) = state.repos(&Caller::new(access, "http.repos.list"))?;
    Ok(Json(json!({ "repos": repos, "index": index })).into_response())
}

#[derive(Debug, Deserialize)]
pub struct ReindexParams {
    #[serde(default)]
    full: bool,
}

/// `GET /v1/repos/{name}` (names may contain `/`).
pub async fn get(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Response, ServiceError> {
    Ok(Json(state.repo(&Caller::new(access, "http.repos.get"), &name)?).into_response())
}

/// `POST /v1/repos/{name}/reindex[?full=true]`: 202.
pub async fn post(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Path(rest): Path<String>,
    Query(params): Query<ReindexParams>,
) -> Result<Response, ServiceError> {
    let Some(name) = rest.strip_suffix("/reindex") else {
        return Err(ServiceError::not_found(
            "no such endpoint: use POST /v1/repos/{name}/reindex",
        ));
    };
    let status = state.reindex(&Caller::new(access, "http.repos.reindex"), name, params.full)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "queued": true, "full": params.full, "repo": status })),
    )
        .into_response())
}

/// `DELETE /v1/repos/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    Path(name): Path<String>,
) -> Result<Response, ServiceError> {
    state.remove(&Caller::new(access, "http.repos.delete"), &name).await?;
    Ok(Json(json!({ "removed": name })).into_response())
}

/// `GET /metrics`: Prometheus text; per-repo series only for readable repos.
pub async fn metrics(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
) -> Result<Response, ServiceError> {
    let daemon = state.daemon()?;
    let readable: Vec<String> = state.list_repos(&access)?.into_iter().map(|s| s.name).collect();
    let text = daemon.metrics_text(&readable);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `POST /v1/webhooks/{provider}`.
pub async fn webhook(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    connect: Option<axum::Extension<axum::extract::ConnectInfo<crate::linger::Peer>>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let started = Instant::now();
    let Some(p) = Provider::parse(&provider) else {
        return ServiceError::not_found("unknown webhook provider: use github, gitlab or gitea").into_response();
    };
    let access = Access::for_principal(Principal::new(format!("webhook:{provider}"), []));
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let err = ServiceError::invalid(format!("failed to read the webhook body: {}", e.body_text()));
            if let Err(unrecorded) = state.audit_repos(p.surface(), &access, Vec::new(), Some(&err), started) {
                return ServiceError::from(unrecorded).into_response();
            }
            return err.into_response();
        }
    };
    let source = connect.map(|axum::Extension(axum::extract::ConnectInfo(peer))| peer.0.ip());
    let result = state.webhook_push(p, source, &headers, &body);
    match result {
        Ok(v) => (StatusCode::ACCEPTED, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}
