//! Everything a user talks to: search, context assembly, answers through
//! LLM backends, the HTTP (with an OpenAI-compatible gateway) and gRPC
//! transports, and the `cairn` binary's commands. The index itself lives in `cairn-indexer`;
//! this crate reads it through the store and embedder APIs.
//!
//! # Layout
//! - [`config`]: layered, strict configuration.
//! - [`search`]: [`search::SearchService`], the one search path (validation, hybrid retrieval, fusion).
//! - [`context`]: [`context::ContextService`], hits → a labelled context within a token budget.
//! - [`llm`]: the OpenAI-compatible backend client (streaming, retries, timeouts).
//! - [`answer`]: [`answer::AnswerService`], context → prompt → sanitized streamed answer with citations.
//! - [`sanitize`]: removes images and links to unknown hosts from answers.
//! - [`openai`]: the OpenAI-compatible gateway transport (`/v1/chat/completions`, `/v1/models`).
//! - [`access`]: principals, the per-repo read rule and clearance; [`auth`]: API tokens; [`audit`]: the hash-chained audit log.
//! - [`limits`]: per-principal request-rate and concurrency caps (429 / `RESOURCE_EXHAUSTED`).
//! - [`oidc`]: OIDC/JWT bearer verification against a JWKS (`[auth] mode = "oidc"`).
//! - [`tls`]: rustls (ring) on the HTTP and gRPC listeners, with optional client certificates.
//! - [`error`]: [`error::ServiceError`] and the single kind → HTTP/gRPC table.
//! - [`http`], [`grpc`]: thin transports; [`json_body`]: the JSON body extractor;
//!   [`state`]: [`state::AppState`], what handlers share; [`server`]: `run(…, listeners, shutdown)`.
//! - [`facade`]: the one operation facade: every operation that returns code
//!   or repo facts is an `AppState` method taking a [`facade::Caller`], and
//!   writes exactly one audit record.
//! - [`gate`]: in front of every route and method: Host ([`hosts`]), Origin and JSON
//!   content-type checks, and one audit record per request; `GrpcLimit` for gRPC.
//! - [`code`]: [`code::CodeService`], indexed repositories and files as indexed.
//! - [`mcp`]: the MCP server (`search_code`, `read_code`, `list_repos`) at `/mcp`;
//!   [`continue_provider`]: Continue's http context provider.
//! - [`daemon`]: [`daemon::Daemon`], the indexer daemon (schedules, triggers, watcher, status);
//!   [`metrics`]: its Prometheus metrics; [`repos`]: the repo status/reindex/remove API and webhooks.
//! - [`commands`]: `cairn index|search|serve|eval` as library functions.
//! - [`store_config`]: `[store]`; [`store_admin`]: `cairn store copy|snapshot|restore`.
//! - [`eval`]: the retrieval-quality eval.
//! - [`schedule`]: `every`/`cron` schedules, jitter and backoff of the daemon.
//! - [`telemetry`]: logging setup.

pub mod access;
pub mod answer;
#[cfg(test)]
mod answer_tests;
pub mod audit;
pub mod auth;
pub mod code;
pub mod context;
pub mod continue_provider;
pub mod error;
pub mod eval;
pub mod facade;
pub mod gate;
#[cfg(test)]
mod gate_tests;
#[cfg(test)]
mod git_https_tests;
pub mod grpc;
pub mod hosts;
pub mod http;
pub mod json_body;
pub mod limits;
#[cfg(test)]
mod limits_tests;
pub mod linger;
pub mod llm;
pub mod mcp;
pub mod oidc;
#[cfg(test)]
mod oidc_tests;
pub mod openai;
pub mod repos;
pub mod sanitize;
#[cfg(test)]
mod sanitize_tests;
pub mod search;
pub mod server;
pub mod slot;
pub mod state;
pub mod telemetry;
pub mod tls;
#[cfg(test)]
mod tls_tests;

/// The configuration crate, under the paths the rest of this crate uses.
pub use cairn_config as config;
pub use cairn_config::{schedule, store as store_config};
/// The index keeper, under the paths the rest of this crate uses.
pub use cairn_engine::{daemon, metrics, roles, store_admin};
