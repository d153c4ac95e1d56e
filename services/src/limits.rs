//! Per-principal limits (`[limits]`): a request-rate token bucket and a cap on
//! requests in flight. A refused request gets HTTP 429 with `Retry-After`, or
//! gRPC `RESOURCE_EXHAUSTED`, and is audited as a denial.
//!
//! Limits apply after authentication (the principal is known) to every
//! authenticated surface: the HTTP API (with `/mcp`, the OpenAI gateway and
//! Continue) through [`crate::http::authenticate`], gRPC through
//! [`crate::gate::GrpcLimit`]. `/healthz` and the gRPC health service are exempt. A
//! request holds its slot until its response body ends, so an answer stream
//! counts as in flight until its last event.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;

use crate::error::{ServiceError, ServiceErrorKind};

pub use cairn_config::limits::LimitsConfig;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    /// Over the rate; a token is available again after this long.
    Rate(Duration),
    /// Too many requests in flight.
    Concurrency,
    /// The audit log cannot take the request's record (its queue is full,
    /// or its writer failed): 503, not 429.
    Unrecorded(crate::audit::Unrecorded),
}

impl Refusal {
    /// Whole seconds to wait (`Retry-After`), at least 1.
    pub fn retry_after_secs(self) -> u64 {
        match self {
            Self::Rate(d) => d.as_secs_f64().ceil().max(1.0) as u64,
            Self::Concurrency | Self::Unrecorded(_) => 1,
        }
    }

    /// The error clients see.
    pub fn error(self, limits: &LimitsConfig) -> ServiceError {
        let message = match self {
            Self::Unrecorded(u) => return u.into(),
            Self::Rate(_) => format!(
                "rate limit exceeded ({} requests per second, burst {}); retry after {} s",
                limits.requests_per_second,
                limits.burst,
                self.retry_after_secs()
            ),
            Self::Concurrency => format!(
                "too many requests in flight for this principal (limits.max_concurrent = {}); retry after {} s",
                limits.max_concurrent,
                self.retry_after_secs()
            ),
        };
        ServiceError {
            kind: ServiceErrorKind::TooManyRequests,
            message,
        }
    }
}

struct Entry {
    tokens: f64,
    refilled: Instant,
    in_flight: u32,
}

/// Buckets and in-flight counts per principal.
pub struct Limiter {
    config: LimitsConfig,
    entries: Mutex<HashMap<String, Entry>>,
}

/// Principals tracked before idle entries (no request in flight, full
/// bucket) are dropped.
const PRUNE_AT: usize = 10_000;

impl Limiter {
    pub fn new(config: LimitsConfig) -> Self {
        Self {
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A limiter that admits everything.
    pub fn off() -> Self {
        Self::new(LimitsConfig::off())
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    fn is_off(&self) -> bool {
        self.config.requests_per_second == 0.0 && self.config.max_concurrent == 0
    }

    /// Admits one request of `principal` (taking a token and an in-flight
    /// slot, released when the [`Permit`] drops), or says why not.
    pub fn admit(self: &Arc<Self>, principal: &str) -> Result<Permit, Refusal> {
        if self.is_off() {
            return Ok(Permit { slot: None });
        }
        let now = Instant::now();
        let rate = self.config.requests_per_second;
        let burst = f64::from(self.config.burst);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= PRUNE_AT && !entries.contains_key(principal) {
            entries.retain(|_, e| {
                e.in_flight > 0
                    || (rate > 0.0 && e.tokens + now.duration_since(e.refilled).as_secs_f64() * rate < burst)
            });
        }
        let e = entries.entry(principal.to_string()).or_insert(Entry {
            tokens: burst,
            refilled: now,
            in_flight: 0,
        });
        if self.config.max_concurrent > 0 && e.in_flight >= self.config.max_concurrent {
            return Err(Refusal::Concurrency);
        }
        if rate > 0.0 {
            e.tokens = (e.tokens + now.duration_since(e.refilled).as_secs_f64() * rate).min(burst);
            e.refilled = now;
            if e.tokens < 1.0 {
                return Err(Refusal::Rate(Duration::from_secs_f64((1.0 - e.tokens) / rate)));
            }
            e.tokens -= 1.0;
        }
        e.in_flight += 1;
        Ok(Permit {
            slot: Some((self.clone(), principal.to_string())),
        })
    }
}

/// One admitted request's in-flight slot; released on drop.
pub struct Permit {
    slot: Option<(Arc<Limiter>, String)>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some((limiter, principal)) = self.slot.take() {
            let mut entries = limiter.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = entries.get_mut(&principal) {
                e.in_flight = e.in_flight.saturating_sub(1);
            }
        }
    }
}

/// The 429 response: the JSON error with `Retry-After`.
pub fn http_refusal(refusal: Refusal, limits: &LimitsConfig) -> axum::response::Response {
    let mut resp = refusal.error(limits).into_response();
    resp.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(refusal.retry_after_secs()),
    );
    resp
}

/// A response body that holds a [`Permit`] until it ends (or is dropped).
pub struct PermitBody<B> {
    inner: B,
    permit: Option<Permit>,
}

impl<B> PermitBody<B> {
    pub fn new(inner: B, permit: Permit) -> Self {
        Self {
            inner,
            permit: Some(permit),
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for PermitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.permit = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rps: f64, burst: u32, concurrent: u32) -> Arc<Limiter> {
        Arc::new(Limiter::new(LimitsConfig {
            requests_per_second: rps,
            burst,
            max_concurrent: concurrent,
        }))
    }

    #[test]
    fn bucket_is_per_principal() {
        // a refill so slow it cannot matter during the test
        let l = limiter(0.001, 3, 0);
        let held: Vec<_> = (0..3).map(|_| l.admit("alice").unwrap()).collect();
        drop(held);
        let Err(Refusal::Rate(wait)) = l.admit("alice") else {
            panic!("the fourth request is over the burst")
        };
        assert!(wait > Duration::from_secs(1));
        assert!(l.admit("bob").is_ok(), "another principal has its own bucket");
    }

    #[test]
    fn concurrency_slots_are_released_on_drop() {
        let l = limiter(0.0, 0, 2);
        let a = l.admit("alice").unwrap();
        let _b = l.admit("alice").unwrap();
        assert_eq!(l.admit("alice").err(), Some(Refusal::Concurrency));
        assert!(l.admit("bob").is_ok());
        drop(a);
        assert!(l.admit("alice").is_ok());
    }

    #[test]
    fn off_admits_everything_and_config_is_checked() {
        let l = Arc::new(Limiter::off());
        for _ in 0..1000 {
            assert!(l.admit("x").is_ok());
        }
        let mut errors = Vec::new();
        LimitsConfig::default().validate(&mut errors);
        LimitsConfig::off().validate(&mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        LimitsConfig {
            requests_per_second: -1.0,
            ..LimitsConfig::default()
        }
        .validate(&mut errors);
        LimitsConfig {
            requests_per_second: 1.0,
            burst: 0,
            max_concurrent: 0,
        }
        .validate(&mut errors);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(Refusal::Rate(Duration::from_millis(1)).retry_after_secs(), 1);
        assert_eq!(Refusal::Rate(Duration::from_millis(2500)).retry_after_secs(), 3);
    }
}
