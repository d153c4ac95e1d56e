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
    Unauthenticated,
    Forbidden,
    Unavailable,
    Internal,
}

impl ServiceErrorKind {
    /// Stable snake_case name (audit records, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::NotFound => "not_found",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::Unavailable => "unavailable",
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
            ServiceErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ServiceErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ServiceErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ServiceErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// gRPC code for this error.
    pub fn grpc_code(&self) -> tonic::Code {
        match self.kind {
            ServiceErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
            ServiceErrorKind::NotFound => tonic::Code::NotFound,
            ServiceErrorKind::PayloadTooLarge => tonic::Code::ResourceExhausted,
            ServiceErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
            ServiceErrorKind::Forbidden => tonic::Code::PermissionDenied,
            ServiceErrorKind::Unavailable => tonic::Code::Unavailable,
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
