//! HTTP transport: thin handlers that parse, call one service function and
//! map errors through [`crate::error`].

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::error::{ServiceError, ServiceErrorKind};
use crate::search::{SearchRequest, SearchResponse};
use crate::server::AppState;

/// The HTTP API.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/search", post(search))
        .route("/v1/continue/context", post(crate::continue_provider::handler))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn not_found() -> ServiceError {
    ServiceError::not_found("no such endpoint")
}

async fn search(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<SearchRequest>,
) -> Result<Json<SearchResponse>, ServiceError> {
    Ok(Json(state.search.search(req).await?))
}

/// A JSON body whose every rejection is a JSON error: malformed JSON and
/// wrong types are 400, an oversized body is 413. The content type is not
/// required to be `application/json`, so `curl -d` works as typed.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ServiceError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ServiceError {
                    kind: ServiceErrorKind::PayloadTooLarge,
                    message: "request body is larger than the server accepts (server.max_body_bytes, 1 MiB by default)"
                        .into(),
                }
            } else {
                ServiceError::invalid(format!("failed to read request body: {}", rejection.body_text()))
            }
        })?;
        let value = serde_json::from_slice::<T>(&bytes)
            .map_err(|e| ServiceError::invalid(format!("invalid request body: {e}")))?;
        Ok(JsonBody(value))
    }
}

impl From<ServiceError> for Response {
    fn from(e: ServiceError) -> Self {
        e.into_response()
    }
}
