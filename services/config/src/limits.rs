//! `[limits]`: per-principal request-rate and concurrency caps.

use serde::{Deserialize, Serialize};

/// `[limits]` settings; `0` turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Sustained requests per second per principal (the bucket's refill rate).
    pub requests_per_second: f64,
    /// Requests a principal may send at once before the rate applies (the
    /// bucket's size); at least 1 when `requests_per_second` is set.
    pub burst: u32,
    /// Requests one principal may have in flight at once (an answer stream
    /// counts until it ends).
    pub max_concurrent: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            requests_per_second: 50.0,
            burst: 100,
            max_concurrent: 16,
        }
    }
}

impl LimitsConfig {
    /// No limits at all.
    pub fn off() -> Self {
        Self {
            requests_per_second: 0.0,
            burst: 0,
            max_concurrent: 0,
        }
    }

    /// Adds every problem to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if !self.requests_per_second.is_finite() || self.requests_per_second < 0.0 {
            errors.push("limits.requests_per_second: must be a non-negative number (0: no rate limit)".into());
        } else if self.requests_per_second > 0.0 && self.burst == 0 {
            errors.push("limits.burst: must be at least 1 when limits.requests_per_second is set".into());
        }
    }
}
