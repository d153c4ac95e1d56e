//! Everything a user talks to: search, the HTTP and gRPC transports, and the
//! `cairn` binary's commands. The index itself lives in `cairn-indexer`;
//! this crate reads it through the store and embedder APIs.
//!
//! # Layout
//! - [`config`]: layered, strict configuration.
//! - [`search`]: [`search::SearchService`], the one search path (validation, hybrid retrieval, fusion).
//! - [`error`]: [`error::ServiceError`] and the single kind → HTTP/gRPC table.
//! - [`http`], [`grpc`]: thin transports; [`server`]: state and `run(…, listeners, shutdown)`.
//! - [`code`]: [`code::CodeService`], indexed repositories and files as indexed.
//! - [`mcp`]: the MCP server (`search_code`, `read_code`, `list_repos`) at `/mcp`;
//!   [`continue_provider`]: Continue's http context provider.
//! - [`commands`]: `cairn index|search|serve|eval` as library functions.
//! - [`eval`]: the retrieval-quality eval.
//! - [`telemetry`]: logging setup.

pub mod code;
pub mod commands;
pub mod config;
pub mod continue_provider;
pub mod error;
pub mod eval;
pub mod grpc;
pub mod http;
pub mod mcp;
pub mod search;
pub mod server;
pub mod telemetry;
