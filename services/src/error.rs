//! The one error table: every service error has a kind, and this is the only
//! place kinds become HTTP statuses and gRPC codes.

use axum::http::StatusCode;
use cairn_indexer::{ErrorKind, IndexError};

/// An error a transport can report.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    pub kind: ServiceErrorKind,
    pub message: String,
}

/// Kinds of service errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceErrorKind {
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    /// A POST body that is not `application/json` (415).
    UnsupportedMediaType,
    Unauthenticated,
    Forbidden,
    Unavailable,
    /// Over a per-principal limit (`[limits]`): 429 / `RESOURCE_EXHAUSTED`.
    TooManyRequests,
    /// An LLM backend failed or is down (502 / `UNAVAILABLE`).
    BadGateway,
    /// An LLM backend did not answer in time (504 / `DEADLINE_EXCEEDED`).
    GatewayTimeout,
    Internal,
}

impl ServiceErrorKind {
    /// Stable snake_case name (audit records, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::NotFound => "not_found",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
            Self::TooManyRequests => "too_many_requests",
            Self::BadGateway => "bad_gateway",
            Self::GatewayTimeout => "gateway_timeout",
            Self::Internal => "internal",
        }
    }
}

impl ServiceError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            kind: ServiceErrorKind::InvalidArgument,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            kind: ServiceErrorKind::NotFound,
            message: message.into(),
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            kind: ServiceErrorKind::Unauthenticated,
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            kind: ServiceErrorKind::Forbidden,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            kind: ServiceErrorKind::Unavailable,
            message: message.into(),
        }
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self {
            kind: ServiceErrorKind::PayloadTooLarge,
            message: message.into(),
        }
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self {
            kind: ServiceErrorKind::UnsupportedMediaType,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            kind: ServiceErrorKind::Internal,
            message: message.into(),
        }
    }

    /// HTTP status for this error.
    pub fn http_status(&self) -> StatusCode {
        match self.kind {
            ServiceErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
            ServiceErrorKind::NotFound => StatusCode::NOT_FOUND,
            ServiceErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServiceErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ServiceErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ServiceErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ServiceErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ServiceErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
            ServiceErrorKind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            ServiceErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// gRPC code for this error.
    pub fn grpc_code(&self) -> tonic::Code {
        match self.kind {
            ServiceErrorKind::InvalidArgument | ServiceErrorKind::UnsupportedMediaType => tonic::Code::InvalidArgument,
            ServiceErrorKind::NotFound => tonic::Code::NotFound,
            ServiceErrorKind::PayloadTooLarge | ServiceErrorKind::TooManyRequests => tonic::Code::ResourceExhausted,
            ServiceErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
            ServiceErrorKind::Forbidden => tonic::Code::PermissionDenied,
            ServiceErrorKind::Unavailable | ServiceErrorKind::BadGateway => tonic::Code::Unavailable,
            ServiceErrorKind::GatewayTimeout => tonic::Code::DeadlineExceeded,
            ServiceErrorKind::Internal => tonic::Code::Internal,
        }
    }
}

impl From<IndexError> for ServiceError {
    fn from(e: IndexError) -> Self {
        let kind = match e.kind() {
            ErrorKind::InvalidArgument => ServiceErrorKind::InvalidArgument,
            ErrorKind::NotFound => ServiceErrorKind::NotFound,
            ErrorKind::Busy | ErrorKind::Unavailable => ServiceErrorKind::Unavailable,
            ErrorKind::Internal => ServiceErrorKind::Internal,
        };
        if kind == ServiceErrorKind::Internal {
            tracing::error!(error = %e, "internal error");
        }
        Self {
            kind,
            message: e.to_string(),
        }
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        tonic::Status::new(e.grpc_code(), e.message)
    }
}

impl axum::response::IntoResponse for ServiceError {
    fn into_response(self) -> axum::response::Response {
        let body = serde_json::json!({ "error": self.message });
        (self.http_status(), axum::Json(body)).into_response()
    }
}

impl ServiceError {
    /// The OpenAI error shape, for the OpenAI-compatible endpoints:
    /// `{"error": {"message", "type", "param", "code"}}`.
    pub fn openai_body(&self) -> serde_json::Value {
        let (kind, code) = match self.kind {
            ServiceErrorKind::InvalidArgument => ("invalid_request_error", serde_json::Value::Null),
            ServiceErrorKind::NotFound => ("invalid_request_error", "not_found".into()),
            ServiceErrorKind::PayloadTooLarge => ("invalid_request_error", "payload_too_large".into()),
            ServiceErrorKind::UnsupportedMediaType => ("invalid_request_error", "unsupported_media_type".into()),
            ServiceErrorKind::Unauthenticated => ("authentication_error", "invalid_api_key".into()),
            ServiceErrorKind::Forbidden => ("permission_error", "forbidden".into()),
            ServiceErrorKind::TooManyRequests => ("rate_limit_error", "rate_limit_exceeded".into()),
            ServiceErrorKind::Unavailable | ServiceErrorKind::BadGateway | ServiceErrorKind::GatewayTimeout => {
                ("api_error", "backend_unavailable".into())
            }
            ServiceErrorKind::Internal => ("server_error", serde_json::Value::Null),
        };
        serde_json::json!({"error": {"message": self.message, "type": kind, "param": null, "code": code}})
    }

    /// This error as an OpenAI-shaped HTTP response.
    pub fn into_openai_response(self) -> axum::response::Response {
        use axum::response::IntoResponse;
        (self.http_status(), axum::Json(self.openai_body())).into_response()
    }
}

impl From<cairn_engine::daemon::DaemonError> for ServiceError {
    fn from(e: cairn_engine::daemon::DaemonError) -> Self {
        match e {
            cairn_engine::daemon::DaemonError::UnknownRepo(n) => ServiceError::not_found(format!("unknown repo {n:?}")),
            cairn_engine::daemon::DaemonError::NotReindexable(n) => ServiceError::invalid(format!(
                "repo {n:?} is not in [[repos]] and was not indexed from a local path; add it to the configuration"
            )),
            cairn_engine::daemon::DaemonError::ShuttingDown => {
                ServiceError::unavailable("the indexer is shutting down")
            }
        }
    }
}

impl From<ServiceError> for axum::response::Response {
    fn from(e: ServiceError) -> Self {
        axum::response::IntoResponse::into_response(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_daemon_errors_map_to_the_table() {
        let unavailable =
            cairn_indexer::error::IndexError::Unavailable("being rebuilt for a new embedding model".into());
        assert_eq!(ServiceError::from(unavailable).http_status().as_u16(), 503);
        let unknown = cairn_engine::daemon::DaemonError::UnknownRepo("x".into());
        assert_eq!(ServiceError::from(unknown).http_status().as_u16(), 404);
        let stopping = cairn_engine::daemon::DaemonError::ShuttingDown;
        assert_eq!(ServiceError::from(stopping).http_status().as_u16(), 503);
    }
}
