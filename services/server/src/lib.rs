//! The transports and the `cairn` binary: decode a request, call the
//! operation facade ([`cairn_services::state::AppState`]), encode the
//! answer. Nothing here decides who may read what, redacts or audits by
//! itself: those happen behind the facade, or in the [`gate`] in front of
//! every route and method.
//!
//! # Layout
//! - [`server`]: `run(…, listeners, shutdown)`, which serves HTTP and gRPC.
//! - [`gate`]: Host ([`cairn_services::hosts`]), Origin and JSON content-type
//!   checks, and one audit record for every request, before routing;
//!   `GrpcLimit` for gRPC.
//! - [`http`]: the HTTP routes (the list every test enumerates), with
//!   [`openai`] (`/v1/chat/completions`, `/v1/models`), [`continue_provider`]
//!   (Continue's context provider), [`repos_http`] (`/v1/repos…`, `/metrics`,
//!   webhooks) and [`json_body`] (the JSON body extractor).
//! - [`grpc`]: `cairn.v1.Retrieval` and `cairn.v1.Indexer`.
//! - [`mcp`]: the MCP server at `/mcp` (`search_code`, `read_code`, `list_repos`).
//! - [`tls`]: rustls on both listeners, optional client certificates;
//!   [`linger`]: TCP accept with lingering close.
//! - [`telemetry`]: logging setup.
//! - `src/bin/cairn/`: the `cairn` binary, one file per command.

pub mod continue_provider;
pub mod gate;
pub mod grpc;
pub mod http;
pub mod json_body;
pub mod linger;
pub mod mcp;
pub mod openai;
pub mod repos_http;
pub mod server;
pub mod telemetry;
pub mod tls;

#[cfg(test)]
mod answer_tests;
#[cfg(test)]
mod decode_tests;
#[cfg(test)]
mod gate_tests;
#[cfg(test)]
mod git_https_tests;
#[cfg(test)]
mod limits_tests;
#[cfg(test)]
mod oidc_tests;
#[cfg(test)]
mod tls_tests;
