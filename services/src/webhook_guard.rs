//! What one source address may do to the webhook endpoint: a token bucket
//! per address, checked before any signature is, and refusals audited at
//! most once per window per address (the record counts the ones left out),
//! so a flood of forged calls neither costs an HMAC each nor fills the
//! audit log.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_config::WebhookConfig;

/// Sources tracked before idle ones are dropped.
const PRUNE_AT: usize = 10_000;

struct Source {
    tokens: f64,
    refilled: Instant,
    /// When the last refusal of this source was audited.
    audited: Option<Instant>,
    /// Refusals since then that were not.
    unaudited: u64,
}

/// Per-source webhook limits.
pub struct WebhookGuard {
    per_second: f64,
    burst: f64,
    window: Duration,
    sources: Mutex<HashMap<IpAddr, Source>>,
}

/// Whether a refusal is audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalRecord {
    /// Write it, noting this many earlier refusals that were not.
    Write { left_out: u64 },
    /// Another refusal of this source was audited within the window.
    Skip,
}

impl WebhookGuard {
    pub fn new(config: &WebhookConfig) -> Self {
        Self {
            per_second: f64::from(config.per_source_per_minute) / 60.0,
            burst: f64::from(config.per_source_burst.max(1)),
            window: Duration::from_secs(config.refusal_audit_window_secs),
            sources: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one call of `source` from its bucket, or says how long until
    /// one is available.
    pub fn admit(&self, source: IpAddr) -> Result<(), Duration> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        self.prune(&mut sources, now);
        let s = sources.entry(source).or_insert_with(|| self.fresh(now));
        s.tokens = (s.tokens + now.duration_since(s.refilled).as_secs_f64() * self.per_second).min(self.burst);
        s.refilled = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.tokens) / self.per_second))
        }
    }

    /// Whether a refusal of `source` is audited now: the first in each
    /// window is, with the count of those left out before it.
    pub fn refusal(&self, source: IpAddr) -> RefusalRecord {
        let now = Instant::now();
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        self.prune(&mut sources, now);
        let s = sources.entry(source).or_insert_with(|| self.fresh(now));
        match s.audited {
            Some(at) if now.duration_since(at) < self.window => {
                s.unaudited += 1;
                RefusalRecord::Skip
            }
            _ => {
                s.audited = Some(now);
                RefusalRecord::Write {
                    left_out: std::mem::take(&mut s.unaudited),
                }
            }
        }
    }

    fn fresh(&self, now: Instant) -> Source {
        Source {
            tokens: self.burst,
            refilled: now,
            audited: None,
            unaudited: 0,
        }
    }

    /// Drops sources with a full bucket and nothing left to report.
    fn prune(&self, sources: &mut HashMap<IpAddr, Source>, now: Instant) {
        if sources.len() < PRUNE_AT {
            return;
        }
        sources.retain(|_, s| {
            let full = self.per_second <= 0.0
                || s.tokens + now.duration_since(s.refilled).as_secs_f64() * self.per_second >= self.burst;
            let quiet = s.unaudited == 0 && s.audited.is_none_or(|at| now.duration_since(at) >= self.window);
            !(full && quiet)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(per_minute: u32, burst: u32) -> WebhookGuard {
        WebhookGuard::new(&WebhookConfig {
            per_source_per_minute: per_minute,
            per_source_burst: burst,
            refusal_audit_window_secs: 3600,
            ..WebhookConfig::default()
        })
    }

    #[test]
    fn each_source_has_its_own_bucket() {
        let g = guard(60, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            g.admit(a).unwrap();
        }
        let wait = g.admit(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(g.admit(b).is_ok());
        let off = guard(0, 1);
        for _ in 0..100 {
            off.admit(a).unwrap();
        }
    }

    #[test]
    fn refusals_are_audited_once_per_window_with_a_count() {
        let g = guard(60, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(g.refusal(a), RefusalRecord::Write { left_out: 0 });
        for _ in 0..5 {
            assert_eq!(g.refusal(a), RefusalRecord::Skip);
        }
        assert_eq!(g.refusal("::1".parse().unwrap()), RefusalRecord::Write { left_out: 0 });
        let short = WebhookGuard::new(&WebhookConfig {
            refusal_audit_window_secs: 0,
            ..WebhookConfig::default()
        });
        assert_eq!(short.refusal(a), RefusalRecord::Write { left_out: 0 });
        assert_eq!(short.refusal(a), RefusalRecord::Write { left_out: 0 });
    }
}
