//! The gate in front of every HTTP route and gRPC method: the checks that
//! hold for browsers in every auth mode, and the rule that every request
//! leaves exactly one audit record.
//!
//! # Browser-facing checks (HTTP, before routing)
//! - **Host.** A request whose `Host` (or HTTP/2 `:authority`) names a host
//!   outside [`HostPolicy`] gets 403: a page cannot reach a loopback cairn
//!   through a DNS name it rebinds to 127.0.0.1.
//! - **Origin.** A request that carries an `Origin` (browsers send it on
//!   cross-site and on every POST) must come from an allowed host, as the MCP
//!   specification requires of `/mcp`; other clients send none.
//! - **Content type.** POST routes other than the webhooks take
//!   `application/json` only (415 otherwise), so a cross-site form or a
//!   no-CORS `fetch` cannot trigger reindexes or answers.
//!
//! # One audit record per request
//! Each request runs inside an audit slot (a task-local). The services write
//! their records as before; [`crate::audit::AuditLog::record`] marks the
//! slot. When a request ends with its slot still empty (401s, malformed
//! bodies, unknown routes, the checks above), the gate writes one record
//! from the response status, naming the principal when authentication got
//! that far. `/healthz` is not recorded, and neither are the MCP protocol's
//! own successful messages (`initialize`, `tools/list`): MCP tool calls
//! record themselves.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::audit::{AuditEvent, Decision};
use crate::auth::Access;
use crate::error::ServiceError;
use crate::server::AppState;

/// The host names a request may address (`[server] allowed_hosts`).
#[derive(Debug, Clone, PartialEq)]
pub struct HostPolicy {
    /// Every host (`"*"` configured, or a wildcard listen address without a list).
    any: bool,
    names: BTreeSet<String>,
}

/// The loopback names every policy admits.
const LOOPBACK_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1"];

impl HostPolicy {
    /// The configured names, or by default the loopback names plus the
    /// listen address's host. A wildcard listen address (`0.0.0.0`, `::`)
    /// without a configured list admits every host: cairn is then
    /// deliberately on the network under names it cannot know, and
    /// authentication is on (mode `none` is refused off loopback).
    pub fn new(configured: &[String], listen: SocketAddr) -> Self {
        let mut names: BTreeSet<String> = LOOPBACK_NAMES.iter().map(|s| s.to_string()).collect();
        let any = if configured.is_empty() {
            listen.ip().is_unspecified()
        } else {
            configured.iter().any(|h| h.trim() == "*")
        };
        names.insert(normalize(&listen.ip().to_string()));
        names.extend(configured.iter().map(|h| normalize(h.trim())).filter(|h| !h.is_empty()));
        Self { any, names }
    }

    /// Admits every host (tests that bind port 0 and call by IP use this too).
    pub fn any() -> Self {
        Self {
            any: true,
            names: BTreeSet::new(),
        }
    }

    /// Whether `authority` (`host`, `host:port`, `[v6]:port`) is allowed.
    pub fn allows_authority(&self, authority: &str) -> bool {
        self.any || self.names.contains(&normalize(host_of(authority)))
    }

    /// Whether an `Origin` header's value is allowed: `scheme://authority`
    /// with an allowed host. `null` and anything unparsable are refused.
    pub fn allows_origin(&self, origin: &str) -> bool {
        if self.any {
            return true;
        }
        match origin.trim().split_once("://") {
            Some((scheme, authority)) if matches!(scheme, "http" | "https") && !authority.contains('/') => {
                self.allows_authority(authority)
            }
            _ => false,
        }
    }
}

/// The host part of an authority: `[::1]:7700` → `::1`, `a:1` → `a`.
fn host_of(authority: &str) -> &str {
    let a = authority.trim();
    let a = a.rsplit_once('@').map_or(a, |(_, h)| h);
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    match a.rsplit_once(':') {
        // one colon: host:port; more: a bare IPv6 address
        Some((h, port)) if !h.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => a,
    }
}

/// Lowercase, brackets and a trailing dot removed.
fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// Whether a `content-type` value is JSON (`application/json`,
/// `application/*+json`, parameters allowed).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The audit slot of one request.
#[derive(Default)]
pub struct Slot {
    records: AtomicUsize,
    access: Mutex<Option<Access>>,
}

impl Slot {
    /// How many records the request has written.
    pub fn records(&self) -> usize {
        self.records.load(Ordering::SeqCst)
    }

    fn access(&self) -> Access {
        self.access
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(Access::open)
    }
}

tokio::task_local! {
    static SLOT: Arc<Slot>;
}

/// Runs `f` as one request with `slot` as its audit slot.
pub async fn scoped<F: Future>(slot: Arc<Slot>, f: F) -> F::Output {
    SLOT.scope(slot, f).await
}

/// Called for every record written: marks the current request's slot. A
/// second record for one request is a bug, logged as one.
pub(crate) fn note_recorded(surface: &str) {
    let _ = SLOT.try_with(|slot| {
        if slot.records.fetch_add(1, Ordering::SeqCst) > 0 {
            tracing::error!(surface, "a second audit record for one request");
        }
    });
}

/// Called once authentication succeeded: later fallback records name the principal.
pub(crate) fn note_access(access: &Access) {
    let _ = SLOT.try_with(|slot| {
        *slot.access.lock().unwrap_or_else(|p| p.into_inner()) = Some(access.clone());
    });
}

/// The audit outcome and decision of an HTTP status.
pub fn outcome_of(status: StatusCode) -> (&'static str, Decision) {
    let outcome = match status.as_u16() {
        200..=399 => "ok",
        400 | 422 => "invalid_argument",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        429 => "too_many_requests",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "gateway_timeout",
        _ => "internal",
    };
    let decision = if matches!(status.as_u16(), 401 | 403) {
        Decision::Deny
    } else {
        Decision::Allow
    };
    (outcome, decision)
}

/// The audit surface of an HTTP request: the name its handler records under.
pub fn http_surface(method: &http::Method, path: &str) -> &'static str {
    match path {
        "/v1/search" => "http.search",
        "/v1/context" => "http.context",
        "/v1/answer" => "http.answer",
        "/v1/chat/completions" => "http.chat_completions",
        "/v1/models" => "http.models",
        "/v1/continue/context" => "http.continue",
        "/v1/repos" => "http.repos.list",
        "/metrics" => "http.metrics",
        "/v1/webhooks/github" => "http.webhook.github",
        "/v1/webhooks/gitlab" => "http.webhook.gitlab",
        "/v1/webhooks/gitea" => "http.webhook.gitea",
        p if p == "/mcp" || p.starts_with("/mcp/") => "http.mcp",
        p if p.starts_with("/v1/repos/") => match *method {
            http::Method::GET => "http.repos.get",
            http::Method::POST => "http.repos.reindex",
            http::Method::DELETE => "http.repos.delete",
            _ => "http",
        },
        _ => "http",
    }
}

/// Writes the record of a request whose services wrote none.
fn fallback_record(state: &AppState, surface: &'static str, access: &Access, status: StatusCode, started: Instant) {
    let (outcome, decision) = outcome_of(status);
    state.audit.record(AuditEvent {
        principal: access.principal.name.clone(),
        surface,
        query: None,
        repos_allowed: Vec::new(),
        results: Vec::new(),
        backend: None,
        model: None,
        decision,
        outcome: outcome.to_string(),
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
    });
}

/// The browser-facing checks: `Err` is the response to send.
fn check_browser(state: &AppState, req: &Request) -> Result<(), ServiceError> {
    let headers = req.headers();
    let authority = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    if let Some(authority) = authority
        && !state.hosts.allows_authority(&authority)
    {
        return Err(ServiceError::forbidden(format!(
            "host {authority:?} is not served here: add it to [server] allowed_hosts"
        )));
    }
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !state.hosts.allows_origin(origin) {
            return Err(ServiceError::forbidden(format!(
                "origin {origin:?} is not allowed: add its host to [server] allowed_hosts"
            )));
        }
    }
    let path = req.uri().path();
    if req.method() == http::Method::POST && !path.starts_with("/v1/webhooks/") {
        let json = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json);
        if !json {
            return Err(ServiceError::unsupported_media_type(
                "send the request body as JSON with `content-type: application/json`",
            ));
        }
    }
    Ok(())
}

/// The outermost HTTP layer: browser checks, then the request inside its
/// audit slot, then the fallback record when the services wrote none.
pub async fn http_gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let surface = http_surface(req.method(), &path);
    let slot = Arc::new(Slot::default());
    if let Err(e) = check_browser(&state, &req) {
        tracing::info!(path = %path, error = %e.message, "request refused at the gate");
        let resp = e.into_response();
        fallback_record(&state, surface, &Access::open(), resp.status(), started);
        return resp;
    }
    let resp = scoped(slot.clone(), next.run(req)).await;
    let quiet = path == "/healthz" || (surface == "http.mcp" && resp.status().is_success());
    if slot.records() == 0 && !quiet {
        fallback_record(&state, surface, &slot.access(), resp.status(), started);
    }
    resp
}

/// gRPC: the record of a call whose services wrote none, from its status
/// (`grpc-status` in the headers of a trailers-only answer; none is OK).
pub(crate) fn grpc_fallback(state: &AppState, surface: &'static str, slot: &Slot, code: tonic::Code, started: Instant) {
    if slot.records() > 0 {
        return;
    }
    let status = match code {
        tonic::Code::Ok => StatusCode::OK,
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => StatusCode::BAD_REQUEST,
        tonic::Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        tonic::Code::PermissionDenied => StatusCode::FORBIDDEN,
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        tonic::Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        tonic::Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        tonic::Code::Unimplemented => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    fallback_record(state, surface, &slot.access(), status, started);
}

/// The audit surface of a gRPC method path (`/cairn.v1.Retrieval/Search`).
pub fn grpc_surface(path: &str) -> &'static str {
    match path.rsplit('/').next().unwrap_or("") {
        "Answer" => "grpc.answer",
        "Search" => "grpc.search",
        "ListRepos" => "grpc.repos.list",
        "GetRepo" => "grpc.repos.get",
        "Reindex" => "grpc.repos.reindex",
        "Watch" => "grpc.repos.watch",
        _ => "grpc",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_default_to_loopback_and_the_listen_address() {
        let p = HostPolicy::new(&[], "127.0.0.1:7700".parse().unwrap());
        for ok in [
            "localhost",
            "localhost:7700",
            "127.0.0.1:7700",
            "[::1]:7700",
            "LOCALHOST.",
            "::1",
        ] {
            assert!(p.allows_authority(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7700",
            "127.0.0.1.nip.io:7700",
            "localhost.evil.example",
            "",
        ] {
            assert!(!p.allows_authority(bad), "{bad}");
        }
        let p = HostPolicy::new(&[], "10.1.2.3:7700".parse().unwrap());
        assert!(p.allows_authority("10.1.2.3:7700"));
        assert!(!p.allows_authority("cairn.internal"));
        // wildcard listen: any host, unless a list is configured
        assert!(HostPolicy::new(&[], "0.0.0.0:7700".parse().unwrap()).allows_authority("cairn.internal"));
        let listed = HostPolicy::new(&["cairn.internal".into()], "0.0.0.0:7700".parse().unwrap());
        assert!(listed.allows_authority("cairn.internal:443"));
        assert!(listed.allows_authority("localhost"));
        assert!(!listed.allows_authority("other.internal"));
        assert!(HostPolicy::new(&["*".into()], "127.0.0.1:1".parse().unwrap()).allows_authority("x"));
    }

    #[test]
    fn origins_must_name_an_allowed_host() {
        let p = HostPolicy::new(&["cairn.corp".into()], "127.0.0.1:7700".parse().unwrap());
        assert!(p.allows_origin("http://localhost:7700"));
        assert!(p.allows_origin("https://cairn.corp"));
        assert!(!p.allows_origin("https://evil.example"));
        assert!(!p.allows_origin("null"));
        assert!(!p.allows_origin("file://"));
        assert!(!p.allows_origin("http://localhost:7700/path"));
        assert!(!p.allows_origin("chrome-extension://abc"));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/vnd.api+json"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("multipart/form-data; boundary=x"));
        assert!(!is_json(""));
    }

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(outcome_of(StatusCode::OK), ("ok", Decision::Allow));
        assert_eq!(
            outcome_of(StatusCode::UNAUTHORIZED),
            ("unauthenticated", Decision::Deny)
        );
        assert_eq!(outcome_of(StatusCode::FORBIDDEN), ("forbidden", Decision::Deny));
        assert_eq!(outcome_of(StatusCode::BAD_REQUEST).0, "invalid_argument");
        assert_eq!(
            outcome_of(StatusCode::UNSUPPORTED_MEDIA_TYPE).0,
            "unsupported_media_type"
        );
        assert_eq!(grpc_surface("/cairn.v1.Indexer/Reindex"), "grpc.repos.reindex");
        assert_eq!(
            http_surface(&http::Method::DELETE, "/v1/repos/acme"),
            "http.repos.delete"
        );
    }
}
