//! The OpenAI-compatible gateway transport: `POST /v1/chat/completions`
//! (streamed and not) and `GET /v1/models`, so Open WebUI, LLM gateways and
//! OpenAI SDKs can point at cairn unchanged. Model ids are the backends'
//! names. Errors use OpenAI's shape (`{"error": {"message", "type", …}}`);
//! the work is [`cairn_services::answer::AnswerService::chat`].
//!
//! Accepted request fields: `model`, `messages` (content as a string or an
//! array of parts, whose `text` parts are joined), `stream`, `max_tokens` /
//! `max_completion_tokens` (capped at the backend's `answer_tokens`),
//! `temperature`, `top_p`, `stop`. Other fields are ignored, as OpenAI
//! clients send many.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;

use crate::json_body::JsonBody;
use cairn_services::answer::ChatRequest;
use cairn_services::auth::Access;
use cairn_services::error::ServiceError;
use cairn_services::facade::Caller;
use cairn_services::llm::{ChatMessage, ChatParams, Delta};
use cairn_services::state::AppState;

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    stop: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: serde_json::Value,
}

/// A message's text: a string, or the `text` parts of an array joined by newlines.
fn content_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// `GET /v1/models`
pub async fn models(State(state): State<AppState>) -> Json<serde_json::Value> {
    let data: Vec<serde_json::Value> = state
        .models()
        .into_iter()
        .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "cairn"}))
        .collect();
    Json(serde_json::json!({"object": "list", "data": data}))
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(State(state): State<AppState>, request: Request) -> Response {
    match completions(state, request).await {
        Ok(r) => r,
        Err(e) => e.into_openai_response(),
    }
}

async fn completions(state: AppState, request: Request) -> Result<Response, ServiceError> {
    let access = request
        .extensions()
        .get::<Access>()
        .cloned()
        .ok_or_else(|| ServiceError::unauthenticated("no credentials were checked for this request"))?;
    let JsonBody(req) =
        <JsonBody<CompletionRequest> as axum::extract::FromRequest<()>>::from_request(request, &()).await?;
    if req.messages.is_empty() {
        return Err(ServiceError::invalid("messages must not be empty"));
    }
    let model = req.model.clone();
    let chat = ChatRequest {
        model: req.model,
        messages: req
            .messages
            .iter()
            .map(|m| ChatMessage::new(&m.role, content_text(&m.content)))
            .collect(),
        params: ChatParams {
            max_tokens: req.max_completion_tokens.or(req.max_tokens),
            temperature: req.temperature,
            top_p: req.top_p,
            stop: req.stop,
        },
    };
    let deltas = state.chat(&Caller::new(access, "http.chat_completions"), chat).await?;
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if !req.stream {
        let mut text = String::new();
        let mut finish = "stop".to_string();
        let mut deltas = deltas;
        while let Some(d) = deltas.next().await {
            match d? {
                Delta::Text(t) => text.push_str(&t),
                Delta::Finish(r) => finish = r,
            }
        }
        return Ok(Json(serde_json::json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }],
        }))
        .into_response());
    }
    let chunk = move |delta: serde_json::Value, finish: Option<String>| {
        serde_json::json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
        .to_string()
    };
    let first = chunk(serde_json::json!({"role": "assistant", "content": ""}), None);
    let body = futures::stream::once(async move { first })
        .chain(deltas.map(move |d| match d {
            Ok(Delta::Text(t)) => chunk(serde_json::json!({ "content": t }), None),
            Ok(Delta::Finish(r)) => chunk(serde_json::json!({}), Some(r)),
            Err(e) => e.openai_body().to_string(),
        }))
        .chain(futures::stream::once(async { "[DONE]".to_string() }))
        .map(|data| Ok::<_, Infallible>(Event::default().data(data)));
    Ok(Sse::new(body).into_response())
}
