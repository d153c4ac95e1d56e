//! Prometheus metrics of the indexer daemon, rendered by hand in the text
//! exposition format at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cairn_indexer::embed::{Embed, Embedded};

/// Upper bounds (seconds) of the latency histograms.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

/// A cumulative histogram of seconds.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: Mutex<([u64; BUCKETS.len()], u64, f64)>,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                c.0[i] += 1;
            }
        }
        c.1 += 1;
        c.2 += seconds;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", c.0[i]);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", c.1);
        let _ = writeln!(out, "{name}_sum {}", c.2);
        let _ = writeln!(out, "{name}_count {}", c.1);
    }
}

/// Counters and histograms the daemon updates.
#[derive(Debug, Default)]
pub struct Metrics {
    pub files_indexed: AtomicU64,
    pub chunks_indexed: AtomicU64,
    pub chunks_embedded: AtomicU64,
    pub tokens_embedded: AtomicU64,
    pub runs_ok: AtomicU64,
    pub runs_failed: AtomicU64,
    /// Store optimizations (compaction, vector index) the daemon ran when idle.
    pub optimizations: AtomicU64,
    /// Failed runs by repo.
    pub failures: Mutex<BTreeMap<String, u64>>,
    pub run_seconds: Histogram,
    pub embed_batch_seconds: Histogram,
}

/// Per-repo gauges computed when `/metrics` is read.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoGauges {
    pub name: String,
    /// Seconds since its last successful run (`None`: never indexed).
    pub lag_seconds: Option<f64>,
    /// Whether the known head commit differs from the indexed one.
    pub behind: bool,
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    pub fn failed(&self, repo: &str) {
        self.runs_failed.fetch_add(1, Ordering::Relaxed);
        *self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(repo.to_string())
            .or_default() += 1;
    }

    /// The text exposition: counters, histograms, the queue depth and the
    /// per-repo gauges (failures only of the repos in `visible`).
    pub fn render(&self, queue_depth: usize, running: usize, repos: &[RepoGauges], visible: &[String]) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "cairn_indexed_files_total",
            "Files in the repos after each successful run.",
            load(&self.files_indexed),
        );
        counter(
            &mut out,
            "cairn_indexed_chunks_total",
            "Chunks in the repos after each successful run.",
            load(&self.chunks_indexed),
        );
        counter(
            &mut out,
            "cairn_chunks_embedded_total",
            "Chunks whose vectors were computed (not taken from the cache).",
            load(&self.chunks_embedded),
        );
        counter(
            &mut out,
            "cairn_tokens_embedded_total",
            "Tokens that went through the embedding model.",
            load(&self.tokens_embedded),
        );
        counter(
            &mut out,
            "cairn_store_optimizations_total",
            "Store optimizations (compaction, vector index) run while the indexer was idle.",
            load(&self.optimizations),
        );
        let _ = writeln!(
            out,
            "# HELP cairn_index_runs_total Indexing runs by result.\n# TYPE cairn_index_runs_total counter\ncairn_index_runs_total{{result=\"ok\"}} {}\ncairn_index_runs_total{{result=\"error\"}} {}",
            load(&self.runs_ok),
            load(&self.runs_failed)
        );
        let _ = writeln!(
            out,
            "# HELP cairn_index_run_failures_total Failed runs by repo.\n# TYPE cairn_index_run_failures_total counter"
        );
        for (repo, n) in self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(r, _)| visible.contains(r))
        {
            let _ = writeln!(out, "cairn_index_run_failures_total{{repo=\"{}\"}} {n}", escape(repo));
        }
        self.run_seconds
            .render(&mut out, "cairn_index_run_seconds", "Duration of indexing runs.");
        self.embed_batch_seconds.render(
            &mut out,
            "cairn_embed_batch_seconds",
            "Duration of one document embedding call.",
        );
        let _ = writeln!(
            out,
            "# HELP cairn_index_queue_depth Repos due or triggered, waiting for a run slot.\n# TYPE cairn_index_queue_depth gauge\ncairn_index_queue_depth {queue_depth}"
        );
        let _ = writeln!(
            out,
            "# HELP cairn_index_running Runs in progress.\n# TYPE cairn_index_running gauge\ncairn_index_running {running}"
        );
        let _ = writeln!(
            out,
            "# HELP cairn_repo_lag_seconds Seconds since the repo's last successful run.\n# TYPE cairn_repo_lag_seconds gauge"
        );
        for r in repos {
            if let Some(lag) = r.lag_seconds {
                let _ = writeln!(out, "cairn_repo_lag_seconds{{repo=\"{}\"}} {lag:.3}", escape(&r.name));
            }
        }
        let _ = writeln!(
            out,
            "# HELP cairn_repo_behind 1 when the repo's known head commit is not the indexed one.\n# TYPE cairn_repo_behind gauge"
        );
        for r in repos {
            let _ = writeln!(
                out,
                "cairn_repo_behind{{repo=\"{}\"}} {}",
                escape(&r.name),
                u8::from(r.behind)
            );
        }
        out
    }
}

/// An embedder that times each document batch into [`Metrics`].
pub struct TimedEmbedder {
    pub inner: std::sync::Arc<dyn Embed>,
    pub metrics: std::sync::Arc<Metrics>,
}

impl Embed for TimedEmbedder {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn fingerprint(&self) -> &str {
        self.inner.fingerprint()
    }

    fn embed_documents(&self, texts: &[&str]) -> cairn_indexer::error::Result<Embedded> {
        let started = Instant::now();
        let out = self.inner.embed_documents(texts);
        self.metrics
            .embed_batch_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Ok(e) = &out {
            self.metrics
                .tokens_embedded
                .fetch_add(e.tokens as u64, Ordering::Relaxed);
        }
        out
    }

    fn embed_query(&self, text: &str) -> cairn_indexer::error::Result<Vec<f32>> {
        self.inner.embed_query(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let m = Metrics::default();
        m.run_seconds.observe(0.3);
        m.run_seconds.observe(3.0);
        m.failed("acme/\"x\"");
        m.chunks_indexed.fetch_add(7, Ordering::Relaxed);
        let text = m.render(
            2,
            1,
            &[RepoGauges {
                name: "a".into(),
                lag_seconds: Some(1.5),
                behind: true,
            }],
            &["a".into(), "acme/\"x\"".into()],
        );
        assert!(text.contains("cairn_indexed_chunks_total 7\n"), "{text}");
        assert!(
            text.contains("cairn_index_run_seconds_bucket{le=\"0.5\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("cairn_index_run_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("cairn_index_run_seconds_count 2\n"), "{text}");
        assert!(text.contains("cairn_index_queue_depth 2\n"), "{text}");
        assert!(text.contains("cairn_repo_lag_seconds{repo=\"a\"} 1.500\n"), "{text}");
        assert!(text.contains("cairn_repo_behind{repo=\"a\"} 1\n"), "{text}");
        assert!(
            text.contains("cairn_index_run_failures_total{repo=\"acme/\\\"x\\\"\"} 1\n"),
            "{text}"
        );
    }
}
