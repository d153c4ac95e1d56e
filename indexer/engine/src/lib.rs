//! The index keeper: everything that keeps the index fresh and moves it,
//! and nothing that serves users. It sits between the configuration and the
//! request path (`server → services → engine → config → indexer → chunk`),
//! so it cannot see principals, transports or `ServiceError`: the daemon
//! hands the request path the records the read rule checks, and the request
//! path decides.
//!
//! # Layout
//! - [`engine`]: [`Engine`], the data dir opened with its model, store and
//!   serving generation; indexing one repo; finishing a model migration.
//! - [`daemon`]: [`daemon::Daemon`], the scheduler (schedules, triggers,
//!   watcher, backoff, status events) over the `[[repos]]` of the config.
//! - [`metrics`]: the daemon's and the embedder's Prometheus metrics.
//! - [`roles`]: split roles on a Qdrant server: the indexer's lease, the
//!   registry and generation it publishes, the replicas' mirror.
//! - [`store_admin`]: `cairn store copy | snapshot | restore`.

pub mod daemon;
pub mod engine;
pub mod metrics;
pub mod roles;
pub mod store_admin;

pub use engine::{Engine, RETIRE_AFTER, validate_repo_name};
