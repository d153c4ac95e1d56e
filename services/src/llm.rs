//! OpenAI-compatible chat-completions client: vLLM, llama.cpp server,
//! Ollama and TGI all speak it.
//!
//! [`Backend::stream_chat`] posts a streaming request and returns once the
//! first token arrived, so every failure before it (connection refused, a
//! 5xx or 429, a broken or silent stream) is retried with exponential
//! backoff and, when the retries are spent, reported as one error naming the
//! backend: [`ServiceErrorKind::BadGateway`] (502 / `UNAVAILABLE`), or
//! [`ServiceErrorKind::GatewayTimeout`] when the first token did not come
//! within `first_token_timeout_ms`. After the first token nothing is retried
//! (the client has seen text); a stream that breaks or outlives
//! `total_timeout_ms` ends with an error item.
//!
//! Cancellation is by drop: dropping the [`ChatStream`] drops the HTTP
//! response and closes the connection, which makes the backend stop
//! generating. The transports drop it when their client goes away.

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, timeout_at};

use crate::config::BackendConfig;
use crate::error::{ServiceError, ServiceErrorKind};

/// One chat message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// Sampling parameters passed through to the backend.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<serde_json::Value>,
}

/// What a streamed chunk carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    Text(String),
    /// The backend's `finish_reason` (`stop`, `length`, …).
    Finish(String),
}

/// A streamed answer: deltas until the backend is done.
pub type ChatStream = BoxStream<'static, Result<Delta, ServiceError>>;

/// The configured backends.
pub struct LlmClient {
    backends: Vec<Backend>,
}

/// One backend and its HTTP client.
pub struct Backend {
    config: BackendConfig,
    http: reqwest::Client,
}

impl LlmClient {
    pub fn new(configs: &[BackendConfig]) -> Self {
        let backends = configs
            .iter()
            .map(|c| Backend {
                http: reqwest::Client::builder()
                    .connect_timeout(Duration::from_millis(c.connect_timeout_ms))
                    .build()
                    // Only TLS initialisation can fail, and this build has no TLS.
                    .unwrap_or_default(),
                config: c.clone(),
            })
            .collect();
        Self { backends }
    }

    /// Backend names, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.backends.iter().map(|b| b.config.name.as_str())
    }

    /// The backend called `name`, or the first one when `name` is None.
    pub fn get(&self, name: Option<&str>) -> Result<&Backend, ServiceError> {
        match name.filter(|n| !n.is_empty()) {
            Some(n) => self
                .backends
                .iter()
                .find(|b| b.config.name == n)
                .ok_or_else(|| ServiceError::not_found(format!("unknown backend {n:?}"))),
            None => self.backends.first().ok_or_else(|| {
                ServiceError::unavailable("no answer backends are configured (add a [[backends]] section)")
            }),
        }
    }
}

fn bad_gateway(message: String) -> ServiceError {
    ServiceError {
        kind: ServiceErrorKind::BadGateway,
        message,
    }
}

fn gateway_timeout(message: String) -> ServiceError {
    ServiceError {
        kind: ServiceErrorKind::GatewayTimeout,
        message,
    }
}

/// Why an attempt failed before its first token.
enum AttemptError {
    /// Worth another try (connection, 5xx, 429, a broken stream).
    Retry(String),
    /// The backend refused the request itself (4xx): retrying will not help.
    Fatal(String),
    /// The first-token deadline passed.
    Timeout,
}

/// A response read up to its first token.
struct Opened {
    response: reqwest::Response,
    parser: SseParser,
    queue: VecDeque<Delta>,
    done: bool,
}

impl Backend {
    pub fn config(&self) -> &BackendConfig {
        &self.config
    }

    /// Streams a chat completion; returns after the first token (see the module docs).
    pub async fn stream_chat(&self, messages: &[ChatMessage], params: &ChatParams) -> Result<ChatStream, ServiceError> {
        let c = &self.config;
        let started = Instant::now();
        let first_deadline = started + Duration::from_millis(c.first_token_timeout_ms);
        let total_deadline = started + Duration::from_millis(c.total_timeout_ms);
        let first_deadline = first_deadline.min(total_deadline);
        let mut body = serde_json::to_value(params).map_err(|e| ServiceError::internal(e.to_string()))?;
        body["model"] = c.model.clone().into();
        body["messages"] = serde_json::to_value(messages).map_err(|e| ServiceError::internal(e.to_string()))?;
        body["stream"] = true.into();
        let url = c.completions_url();
        let mut last = String::new();
        let mut attempts = 0;
        for attempt in 0..=c.retries {
            if attempt > 0 {
                let backoff = Duration::from_millis(c.retry_backoff_ms.saturating_mul(1 << (attempt - 1).min(16)));
                if Instant::now() + backoff >= first_deadline {
                    break;
                }
                tokio::time::sleep(backoff).await;
            }
            attempts += 1;
            match timeout_at(first_deadline, self.attempt(&url, &body)).await {
                Ok(Ok(opened)) => {
                    if attempt > 0 {
                        tracing::info!(backend = %c.name, attempt, "backend answered after retrying");
                    }
                    return Ok(self.stream_from(opened, total_deadline));
                }
                Ok(Err(AttemptError::Fatal(m))) => {
                    return Err(bad_gateway(format!(
                        "backend {} at {url} refused the request: {m}",
                        c.name
                    )));
                }
                Ok(Err(AttemptError::Retry(m))) => {
                    tracing::warn!(backend = %c.name, attempt, error = %m, "backend attempt failed");
                    last = m;
                }
                Ok(Err(AttemptError::Timeout)) | Err(_) => {
                    tracing::warn!(backend = %c.name, attempt, "backend sent no first token in time");
                    return Err(gateway_timeout(format!(
                        "backend {} at {url} sent no first token within {} ms",
                        c.name,
                        first_deadline.duration_since(started).as_millis()
                    )));
                }
            }
        }
        Err(bad_gateway(format!(
            "backend {} at {url} is unavailable after {attempts} attempts: {last}",
            c.name
        )))
    }

    async fn attempt(&self, url: &str, body: &serde_json::Value) -> Result<Opened, AttemptError> {
        let mut req = self.http.post(url).json(body);
        if let Some(key) = &self.config.api_key {
            req = req.bearer_auth(key);
        }
        let mut response = req.send().await.map_err(|e| {
            if e.is_timeout() {
                AttemptError::Retry(format!("connect timed out ({} ms)", self.config.connect_timeout_ms))
            } else {
                AttemptError::Retry(error_chain(&e))
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let text: String = text.chars().take(500).collect();
            let m = format!("HTTP {status}: {}", text.trim());
            return Err(
                if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                    AttemptError::Retry(m)
                } else {
                    AttemptError::Fatal(m)
                },
            );
        }
        let mut parser = SseParser::default();
        let mut queue = VecDeque::new();
        let mut done = false;
        loop {
            match response.chunk().await {
                Ok(Some(bytes)) => {
                    for item in parser.push(&bytes) {
                        match parse_chunk(&item) {
                            Ok(Some(Chunk::Done)) => done = true,
                            Ok(Some(Chunk::Deltas(ds))) => queue.extend(ds),
                            Ok(None) => {}
                            Err(m) => return Err(AttemptError::Retry(m)),
                        }
                    }
                    if done || queue.iter().any(|d| matches!(d, Delta::Text(_))) {
                        break;
                    }
                }
                Ok(None) => {
                    // Ended before any text: an empty answer if the backend said it finished.
                    if queue.iter().any(|d| matches!(d, Delta::Finish(_))) {
                        done = true;
                        break;
                    }
                    return Err(AttemptError::Retry("the stream ended before the first token".into()));
                }
                Err(e) if e.is_timeout() => return Err(AttemptError::Timeout),
                Err(e) => return Err(AttemptError::Retry(format!("the stream broke: {}", error_chain(&e)))),
            }
        }
        Ok(Opened {
            response,
            parser,
            queue,
            done,
        })
    }

    fn stream_from(&self, opened: Opened, deadline: Instant) -> ChatStream {
        let name = self.config.name.clone();
        let total_ms = self.config.total_timeout_ms;
        let state = (opened, false);
        Box::pin(futures::stream::unfold(state, move |(mut o, mut failed)| {
            let name = name.clone();
            async move {
                loop {
                    if let Some(d) = o.queue.pop_front() {
                        return Some((Ok(d), (o, failed)));
                    }
                    if o.done || failed {
                        return None;
                    }
                    match timeout_at(deadline, o.response.chunk()).await {
                        Err(_) => {
                            failed = true;
                            let e = gateway_timeout(format!("backend {name} did not finish within {total_ms} ms"));
                            return Some((Err(e), (o, failed)));
                        }
                        Ok(Ok(Some(bytes))) => {
                            for item in o.parser.push(&bytes) {
                                match parse_chunk(&item) {
                                    Ok(Some(Chunk::Done)) => o.done = true,
                                    Ok(Some(Chunk::Deltas(ds))) => o.queue.extend(ds),
                                    Ok(None) => {}
                                    Err(m) => {
                                        failed = true;
                                        o.queue.clear();
                                        return Some((Err(bad_gateway(format!("backend {name}: {m}"))), (o, failed)));
                                    }
                                }
                            }
                        }
                        Ok(Ok(None)) => o.done = true,
                        Ok(Err(e)) => {
                            failed = true;
                            let e = bad_gateway(format!("backend {name}: the stream broke: {}", error_chain(&e)));
                            return Some((Err(e), (o, failed)));
                        }
                    }
                }
            }
        }))
    }
}

/// An error and its sources, `: `-joined (reqwest's top-level message alone
/// rarely says "connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        source = inner.source();
    }
    s
}

/// What one SSE `data:` payload of a chat-completions stream means.
#[derive(Debug, PartialEq)]
pub enum Chunk {
    Deltas(Vec<Delta>),
    /// `data: [DONE]`
    Done,
}

/// Parses one `data:` payload: `[DONE]`, a `chat.completion.chunk`, or an
/// error object (an `Err` with its message). Unknown shapes are skipped.
pub fn parse_chunk(data: &str) -> Result<Option<Chunk>, String> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Some(Chunk::Done));
    }
    let v: serde_json::Value = serde_json::from_str(data).map_err(|e| format!("malformed stream chunk: {e}"))?;
    if let Some(err) = v.get("error") {
        let m = err
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string());
        return Err(format!("the backend reported an error: {m}"));
    }
    let mut out = Vec::new();
    if let Some(choice) = v.get("choices").and_then(|c| c.get(0)) {
        let text = choice
            .pointer("/delta/content")
            .or_else(|| choice.pointer("/message/content"))
            .and_then(|t| t.as_str());
        if let Some(t) = text.filter(|t| !t.is_empty()) {
            out.push(Delta::Text(t.to_string()));
        }
        if let Some(r) = choice.get("finish_reason").and_then(|r| r.as_str()) {
            out.push(Delta::Finish(r.to_string()));
        }
    }
    Ok(if out.is_empty() { None } else { Some(Chunk::Deltas(out)) })
}

/// Incremental Server-Sent Events parser: bytes in, complete events' `data`
/// out. Handles `\n` and `\r\n` line ends, comments, multi-line data and
/// events split anywhere (inside UTF-8 sequences too).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the data of every event completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            if line.is_empty() {
                if let Some(d) = self.data.take() {
                    events.push(d);
                }
            } else if line.starts_with(':') {
                // comment / keep-alive
            } else {
                let (field, value) = match line.find(':') {
                    Some(i) => {
                        let v = &line[i + 1..];
                        (&line[..i], v.strip_prefix(' ').unwrap_or(v))
                    }
                    None => (line.as_str(), ""),
                };
                if field == "data" {
                    match &mut self.data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => self.data = Some(value.to_string()),
                    }
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_split_anywhere() {
        let stream = "data: {\"a\":1}\r\n\r\n: keep-alive\n\nevent: x\ndata: line1\ndata: line2\n\ndata:[DONE]\n\n";
        let bytes = stream.as_bytes();
        for cut in 0..bytes.len() {
            let mut p = SseParser::default();
            let mut events = p.push(&bytes[..cut]);
            events.extend(p.push(&bytes[cut..]));
            assert_eq!(events, ["{\"a\":1}", "line1\nline2", "[DONE]"], "cut at {cut}");
        }
        // Multi-byte UTF-8 split between reads.
        let text = "data: {\"t\":\"héllo → wörld\"}\n\n".as_bytes();
        let mut p = SseParser::default();
        let mut events = Vec::new();
        for b in text {
            events.extend(p.push(std::slice::from_ref(b)));
        }
        assert_eq!(events, ["{\"t\":\"héllo → wörld\"}"]);
    }

    #[test]
    fn chunks_parse() {
        let c = parse_chunk(r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#).unwrap();
        assert_eq!(c, Some(Chunk::Deltas(vec![Delta::Text("Hi".into())])));
        let c = parse_chunk(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#).unwrap();
        assert_eq!(c, Some(Chunk::Deltas(vec![Delta::Finish("stop".into())])));
        assert_eq!(
            parse_chunk(r#"{"choices":[{"delta":{"role":"assistant"}}]}"#).unwrap(),
            None
        );
        assert_eq!(parse_chunk(" [DONE]").unwrap(), Some(Chunk::Done));
        let e = parse_chunk(r#"{"error":{"message":"context too long"}}"#).unwrap_err();
        assert!(e.contains("context too long"), "{e}");
        assert!(parse_chunk("{oops").is_err());
    }
}
