//! [`JsonBody`]: the JSON request body extractor every HTTP handler uses.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use cairn_services::error::{ServiceError, ServiceErrorKind};

/// A JSON body whose every rejection is a JSON error: malformed JSON and
/// wrong types are 400, an oversized body is 413. The content type was
/// checked before routing ([`crate::gate`]: 415 unless `application/json`).
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
