//! The indexer's error type. Each variant knows its [`ErrorKind`], which the
//! services map to HTTP status codes and gRPC codes in one place.

use std::path::PathBuf;

/// What went wrong, coarsely: enough for a transport to pick a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller asked for something malformed.
    InvalidArgument,
    /// The thing asked for does not exist.
    NotFound,
    /// Another process holds a resource (the data directory lock).
    Busy,
    /// A dependency (store, model runtime) is not available right now.
    Unavailable,
    /// A bug or an unexpected failure inside cairn.
    Internal,
}

/// Errors of the indexing and retrieval core.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("data dir {dir} is in use by {holder}; use its HTTP API")]
    DataDirBusy { dir: PathBuf, holder: String },
    #[error("failed to load the onnx runtime from {path}: {message}")]
    Runtime { path: PathBuf, message: String },
    #[error("failed to load model from {dir}: {message}")]
    Model { dir: PathBuf, message: String },
    #[error("embedding failed: {0}")]
    Embed(String),
    #[error("vector store: {0}")]
    Store(String),
    #[error("failed to read repository at {path}: {message}")]
    Source { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("indexing was cancelled")]
    Cancelled,
    /// Temporarily unable to answer (503 / `UNAVAILABLE`).
    #[error("{0}")]
    Unavailable(String),
    /// A bug: an invariant broke or a worker thread panicked.
    #[error("{0}")]
    Internal(String),
}

impl IndexError {
    /// The coarse kind, used by transports to choose a status code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IndexError::InvalidArgument(_) => ErrorKind::InvalidArgument,
            IndexError::NotFound(_) => ErrorKind::NotFound,
            IndexError::DataDirBusy { .. } => ErrorKind::Busy,
            IndexError::Store(_) | IndexError::Unavailable(_) => ErrorKind::Unavailable,
            IndexError::Runtime { .. }
            | IndexError::Model { .. }
            | IndexError::Embed(_)
            | IndexError::Source { .. }
            | IndexError::Io { .. }
            | IndexError::Cancelled
            | IndexError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        IndexError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for the indexer.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
