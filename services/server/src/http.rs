//! HTTP transport: thin handlers that parse, call one service function and
//! map errors through [`cairn_services::error`].

use std::convert::Infallible;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::StreamExt;

pub use crate::json_body::JsonBody;
use cairn_services::answer::{AnswerEvent, AnswerRequest};
use cairn_services::auth::Access;
use cairn_services::context::{Context, ContextRequest};
use cairn_services::error::ServiceError;
use cairn_services::facade::Caller;
use cairn_services::search::{SearchRequest, SearchResponse};
use cairn_services::state::AppState;

/// One HTTP route: its path pattern and methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub path: &'static str,
    pub methods: &'static [&'static str],
    /// Whether the route sits behind bearer authentication (when auth is on).
    pub authenticated: bool,
}

/// Builds the router and, from the same calls, the list of its routes, so
/// the list cannot drift from what is served (the promise matrix test
/// enumerates it).
struct Routes {
    router: Router<AppState>,
    list: Vec<RouteInfo>,
}

impl Routes {
    fn route(
        mut self,
        path: &'static str,
        methods: &'static [&'static str],
        handler: axum::routing::MethodRouter<AppState>,
    ) -> Self {
        self.router = self.router.route(path, handler);
        self.list.push(RouteInfo {
            path,
            methods,
            authenticated: false,
        });
        self
    }

    /// Puts every route added so far behind `authenticate` (`None`: only
    /// the list is wanted).
    fn authenticated(mut self, state: Option<&AppState>) -> Self {
        if let Some(state) = state {
            self.router = self
                .router
                .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
        }
        for r in &mut self.list {
            r.authenticated = true;
        }
        self
    }
}

/// The routes and the router serving them (without `/mcp`, which
/// [`crate::server`] adds behind the same authentication).
fn build(state: Option<&AppState>) -> Routes {
    Routes {
        router: Router::new(),
        list: Vec::new(),
    }
    .route("/v1/search", &["POST"], post(search))
    .route("/v1/context", &["POST"], post(context))
    .route("/v1/answer", &["POST"], post(answer))
    .route("/v1/chat/completions", &["POST"], post(crate::openai::chat_completions))
    .route("/v1/models", &["GET"], get(crate::openai::models))
    .route(
        "/v1/continue/context",
        &["POST"],
        post(crate::continue_provider::handler),
    )
    .route("/v1/repos", &["GET"], get(crate::repos_http::list))
    .route(
        "/v1/repos/{*name}",
        &["GET", "POST", "DELETE"],
        get(crate::repos_http::get)
            .post(crate::repos_http::post)
            .delete(crate::repos_http::delete),
    )
    .route("/metrics", &["GET"], get(crate::repos_http::metrics))
    // every route above needs credentials (when auth is on)
    .authenticated(state)
    .route("/healthz", &["GET"], get(healthz))
    // webhooks authenticate by the provider's signature, not a bearer token
    .route("/v1/webhooks/{provider}", &["POST"], post(crate::repos_http::webhook))
}

/// Every HTTP route of [`router`], `/mcp` included.
pub fn routes() -> Vec<RouteInfo> {
    let mut list = build(None).list;
    list.push(RouteInfo {
        path: "/mcp",
        methods: &["GET", "POST", "DELETE"],
        authenticated: true,
    });
    list
}

/// The HTTP API.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    build(Some(&state))
        .router
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Closes an HTTP/1 connection after a 413: the server stopped reading the
/// body at the limit, so the rest of it is still on the wire and the
/// connection cannot carry another request. Without `Connection: close` a
/// pooling client (reqwest, most SDKs) sends its next request on it and gets
/// a reset instead of an answer. HTTP/2 streams end on their own.
pub(crate) async fn close_after_unread_body(req: Request, next: Next) -> Response {
    let http1 = req.version() <= axum::http::Version::HTTP_11;
    let mut resp = next.run(req).await;
    if http1 && resp.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    resp
}

async fn healthz() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn not_found() -> ServiceError {
    ServiceError::not_found("no such endpoint")
}

/// Resolves the request's credentials into an [`Access`] for the handler,
/// or answers 401; then applies the principal's limits (429).
pub(crate) async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match state.authenticate_async(header.as_deref()).await {
        Ok(access) => {
            cairn_services::slot::note_access(&access);
            // per-principal limits; the slot is held until the body ends
            let permit = match state.admit(&access, crate::gate::http_surface(req.method(), req.uri().path())) {
                Ok(p) => p,
                Err(refusal) => return cairn_services::limits::http_refusal(refusal, state.limits.config()),
            };
            req.extensions_mut().insert(access);
            next.run(req)
                .await
                .map(|body| axum::body::Body::new(cairn_services::limits::PermitBody::new(body, permit)))
        }
        Err(e) => {
            tracing::info!(path = %req.uri().path(), error = %e.message, "request refused");
            e.into_response()
        }
    }
}

async fn search(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    JsonBody(req): JsonBody<SearchRequest>,
) -> Result<Json<SearchResponse>, ServiceError> {
    Ok(Json(state.search(&Caller::new(access, "http.search"), req).await?))
}

async fn context(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    JsonBody(req): JsonBody<ContextRequest>,
) -> Result<Json<Context>, ServiceError> {
    Ok(Json(state.context(&Caller::new(access, "http.context"), req).await?))
}

/// Server-Sent Events: `token` events (`{"text": "..."}`), then one `done`
/// event (`AnswerDone`), or an `error` event (`{"error": "..."}`) if the
/// backend fails after the first token. Errors before it are plain JSON
/// errors with their status (502 naming the backend when it is down).
async fn answer(
    State(state): State<AppState>,
    Extension(access): Extension<Access>,
    JsonBody(req): JsonBody<AnswerRequest>,
) -> Result<Response, ServiceError> {
    let events = state.answer(&Caller::new(access, "http.answer"), req).await?;
    let sse = events.map(|item| {
        let event = match item {
            Ok(AnswerEvent::Token(text)) => Event::default()
                .event("token")
                .data(serde_json::json!({ "text": text }).to_string()),
            Ok(AnswerEvent::Done(done)) => Event::default()
                .event("done")
                .data(serde_json::to_string(&done).unwrap_or_default()),
            Err(e) => Event::default()
                .event("error")
                .data(serde_json::json!({ "error": e.message }).to_string()),
        };
        Ok::<_, Infallible>(event)
    });
    Ok(Sse::new(sse).keep_alive(KeepAlive::default()).into_response())
}
