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
//! their records as before; [`cairn_services::audit::AuditLog::record`] marks the
//! slot. When a request ends with its slot still empty (401s, malformed
//! bodies, unknown routes, the checks above), the gate writes one record
//! from the response status, naming the principal when authentication got
//! that far. `/healthz` is not recorded, and neither are the MCP protocol's
//! own successful messages (`initialize`, `tools/list`): MCP tool calls
//! record themselves.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use http::StatusCode;

use cairn_services::audit::{AuditEvent, Decision};
use cairn_services::auth::Access;
use cairn_services::error::ServiceError;
pub use cairn_services::hosts::HostPolicy;
pub use cairn_services::slot::{Slot, note_access, scoped};
use cairn_services::state::AppState;

/// Whether a `content-type` value is JSON (`application/json`,
/// `application/*+json`, parameters allowed).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
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
fn fallback_record(
    state: &AppState,
    surface: &'static str,
    access: &Access,
    status: StatusCode,
    started: Instant,
) -> Result<(), cairn_services::audit::Unrecorded> {
    let (outcome, decision) = outcome_of(status);
    state.record_unrecorded(AuditEvent::bare(
        surface,
        access,
        decision,
        outcome,
        started.elapsed().as_secs_f64() * 1000.0,
    ))
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
        if let Err(unrecorded) = fallback_record(&state, surface, &Access::open(), resp.status(), started) {
            return ServiceError::from(unrecorded).into_response();
        }
        return resp;
    }
    // nothing is served unrecorded: when the audit log cannot take records,
    // every request but the health check answers 503
    if path != "/healthz"
        && let Err(unrecorded) = state.audit_available()
    {
        tracing::warn!(path = %path, "request refused: {}", unrecorded.message());
        return ServiceError::from(unrecorded).into_response();
    }
    let resp = scoped(slot.clone(), next.run(req)).await;
    let quiet = path == "/healthz" || (surface == "http.mcp" && resp.status().is_success());
    if slot.records() == 0
        && !quiet
        && let Err(unrecorded) = fallback_record(&state, surface, &slot.access(), resp.status(), started)
    {
        return ServiceError::from(unrecorded).into_response();
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
    if let Err(unrecorded) = fallback_record(state, surface, &slot.access(), status, started) {
        // the call's status is already on its way: it is logged instead
        tracing::error!(surface, "a gRPC call's record was not taken: {}", unrecorded.message());
    }
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

/// The gRPC `Retrieval` service behind authentication (the `authorization`
/// metadata, `UNAUTHENTICATED` without it) and the per-principal limits; the
/// caller's [`Access`] goes into the request's extensions for the handlers.
#[derive(Clone)]
pub struct GrpcLimit<S> {
    inner: S,
    state: AppState,
}

impl<S> GrpcLimit<S> {
    pub fn new(inner: S, state: AppState) -> Self {
        Self { inner, state }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for GrpcLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for GrpcLimit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // the clone is ready (the inner service always is); keep the polled one
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        let started = std::time::Instant::now();
        let surface = crate::gate::grpc_surface(req.uri().path());
        let slot = std::sync::Arc::new(Slot::default());
        let call = async move {
            let header = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let access = match state.authenticate_async(header.as_deref()).await {
                Ok(a) => a,
                Err(e) => return (Ok(tonic::Status::from(e).into_http()), state),
            };
            note_access(&access);
            let permit = match state.admit(&access, surface) {
                Ok(p) => p,
                Err(refusal) => {
                    let mut status: tonic::Status = refusal.error(state.limits.config()).into();
                    if let Ok(v) = refusal.retry_after_secs().to_string().parse() {
                        status.metadata_mut().insert("retry-after", v);
                    }
                    return (Ok(status.into_http()), state);
                }
            };
            req.extensions_mut().insert(access);
            let resp = inner.call(req).await.map(|resp| {
                resp.map(|body| tonic::body::Body::new(cairn_services::limits::PermitBody::new(body, permit)))
            });
            (resp, state)
        };
        Box::pin(async move {
            // one audit record per call: the services' own, or one from the status
            let (resp, state) = scoped(slot.clone(), call).await;
            if let Ok(resp) = &resp {
                let code = resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32);
                crate::gate::grpc_fallback(&state, surface, &slot, code, started);
            }
            resp
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
