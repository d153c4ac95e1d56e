//! cairn's index: everything between a repository on disk and points in a
//! vector store. Nothing here knows about HTTP, gRPC or users.
//!
//! A run reads a [`source::Snapshot`] (git HEAD tree or plain directory),
//! redacts secrets ([`secrets::Scanner`]), chunks each file by syntax ([`cairn_chunk::Chunker`]), embeds the chunks
//! ([`embed::Embed`], ONNX Runtime by default), adds BM25 sparse vectors
//! ([`sparse`]) and writes points to a [`store::VectorStore`]; the
//! [`pipeline`] runs those stages concurrently. The services read the same
//! store and embedder to answer queries.
//!
//! # Layout
//! - [`source`]: files of a repository, and why some are skipped.
//! - [`secrets`]: finds secrets in file text and redacts them before chunking.
//! - [`embed`]: the ONNX Runtime embedder, model settings, a test embedder.
//! - [`sparse`]: code-aware BM25 term vectors.
//! - [`store`]: the [`store::VectorStore`] trait and the embedded `qdrant-edge` backend.
//! - [`serving`]: the model and store pair searches read, swapped as one on a generation switch.
//! - [`pipeline`]: chunk → embed → store, with deterministic point ids.
//! - [`repo`]: a followed repository ([`repo::RepoSpec`]) and one run of it ([`repo::RepoIndexer`]).
//! - [`sync`]: resolves a repo's source, fetching remotes into bare mirrors.
//! - [`cache`]: the embedding cache (content hash → vector), shared by all repos.
//! - [`datadir`]: the locked data directory; [`registry`]: indexed repositories.
//! - [`error`]: [`IndexError`] and its [`ErrorKind`].

pub mod cache;
pub mod datadir;
pub mod embed;
pub mod error;
pub mod generation;
pub mod pipeline;
pub mod query_embed;
pub mod registry;
pub mod repo;
pub mod secrets;
pub mod serving;
pub mod source;
pub mod sparse;
pub mod store;
pub mod sync;

pub use cairn_chunk as chunk;
pub use error::{ErrorKind, IndexError, Result};
