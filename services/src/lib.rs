//! The request path: every operation that returns code or facts about
//! repositories, behind one facade that authorizes, clears, redacts and
//! audits. Transports (`cairn-server`) decode a request, call an
//! [`state::AppState`] method and encode the answer; the index keeper
//! (`cairn-engine`) and the index (`cairn-indexer`) sit below.
//!
//! # Layout
//! - [`state`]: [`state::AppState`], what every transport shares;
//!   [`facade`]: the operation facade: every operation is an `AppState`
//!   method taking a [`facade::Caller`], and writes exactly one audit record.
//! - [`search`]: [`search::SearchService`], the one search path (validation, hybrid retrieval, fusion).
//! - [`context`]: [`context::ContextService`], hits → a labelled context within a token budget.
//! - [`answer`]: [`answer::AnswerService`], context → prompt → sanitized streamed answer with citations;
//!   [`llm`]: the OpenAI-compatible backend client; [`sanitize`]: removes images and links to unknown hosts.
//! - [`report`]: signals from a pasted bug report (paths, stack frames in six languages,
//!   identifiers, the exception) and the part of it the embedding model sees.
//! - [`code`]: [`code::CodeService`], indexed repositories and files as indexed, redacted.
//! - [`repos`]: repo status, reindex, remove and push webhooks.
//! - [`access`]: principals, the per-repo read rule and clearance; [`auth`]: API tokens;
//!   [`oidc`]: OIDC/JWT bearer verification; [`hosts`]: the Host names requests may address.
//! - [`audit`]: the hash-chained audit log; [`slot`]: the per-request audit slot the gate opens.
//! - [`limits`]: per-principal request-rate and concurrency caps (429 / `RESOURCE_EXHAUSTED`).
//! - [`error`]: [`error::ServiceError`] and the single kind → HTTP/gRPC table (the one place
//!   this crate speaks axum and tonic).
//! - [`eval`]: the retrieval-quality eval.
//!
//! `config`, `schedule` and `store_config` re-export `cairn-config`; `daemon`, `metrics`,
//! `roles` and `store_admin` re-export `cairn-engine`.

pub mod access;
pub mod answer;
pub mod audit;
pub mod auth;
pub mod code;
pub mod context;
pub mod error;
pub mod eval;
pub mod facade;
pub mod hosts;
pub mod limits;
pub mod llm;
pub mod oidc;
pub mod report;
pub mod repos;
pub mod sanitize;
#[cfg(test)]
mod sanitize_tests;
pub mod search;
pub mod slot;
pub mod state;
pub mod webhook_guard;

/// The configuration crate, under the paths the rest of this crate uses.
pub use cairn_config as config;
pub use cairn_config::{schedule, store as store_config};
/// The index keeper, under the paths the rest of this crate uses.
pub use cairn_engine::{daemon, metrics, roles, store_admin};
