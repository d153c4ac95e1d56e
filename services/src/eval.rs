//! The retrieval-quality eval (`cairn eval`): indexes every
//! `<eval dir>/corpus/<repo>/` as repository `<repo>`, runs each query of
//! `queries.jsonl` through [`SearchService::search`] restricted to its repo,
//! and scores the top 10 with the hit rule of the eval's README: same repo
//! and path, the result overlaps at least half of the target's lines, and a
//! result longer than 200 lines never counts.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::search::{SearchHit, SearchRequest, SearchService};

/// One eval query.
#[derive(Debug, Clone, Deserialize)]
pub struct Query {
    pub query: String,
    pub repo: String,
    #[serde(default)]
    pub lang: String,
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
}

/// Metrics of one group of queries.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Metrics {
    pub n: usize,
    #[serde(rename = "recall@1")]
    pub recall_1: f64,
    #[serde(rename = "recall@5")]
    pub recall_5: f64,
    #[serde(rename = "recall@10")]
    pub recall_10: f64,
    #[serde(rename = "mrr@10")]
    pub mrr_10: f64,
}

/// Whether `hit` answers `q` under the eval's rule.
pub fn is_hit(q: &Query, hit: &SearchHit) -> bool {
    if hit.repo != q.repo || hit.path != q.path || hit.end_line < hit.start_line {
        return false;
    }
    if hit.end_line - hit.start_line + 1 > 200 {
        return false;
    }
    let overlap = i64::from(hit.end_line.min(q.end_line)) - i64::from(hit.start_line.max(q.start_line)) + 1;
    overlap as f64 >= 0.5 * f64::from(q.end_line - q.start_line + 1)
}

/// Rank (0-based) of the first hit in the top 10.
pub fn first_hit(q: &Query, results: &[SearchHit]) -> Option<usize> {
    results.iter().take(10).position(|h| is_hit(q, h))
}

/// Aggregates ranks into metrics overall (`all`), per repo and per language.
pub fn metrics(queries: &[Query], ranks: &[Option<usize>]) -> BTreeMap<String, Metrics> {
    let mut acc: BTreeMap<String, (usize, usize, usize, usize, f64)> = BTreeMap::new();
    for (q, rank) in queries.iter().zip(ranks) {
        let mut keys = vec!["all".to_string(), q.repo.clone()];
        if !q.lang.is_empty() {
            keys.push(q.lang.clone());
        }
        for key in keys {
            let m = acc.entry(key).or_default();
            m.0 += 1;
            if let Some(r) = rank {
                m.1 += usize::from(*r < 1);
                m.2 += usize::from(*r < 5);
                m.3 += 1;
                m.4 += 1.0 / (*r as f64 + 1.0);
            }
        }
    }
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    acc.into_iter()
        .map(|(k, (n, r1, r5, r10, mrr))| {
            let nf = n as f64;
            (
                k,
                Metrics {
                    n,
                    recall_1: round(r1 as f64 / nf),
                    recall_5: round(r5 as f64 / nf),
                    recall_10: round(r10 as f64 / nf),
                    mrr_10: round(mrr / nf),
                },
            )
        })
        .collect()
}

/// Reads `queries.jsonl`.
pub fn load_queries(eval_dir: &Path) -> anyhow::Result<Vec<Query>> {
    let path = eval_dir.join("queries.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("failed to read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), i + 1)))
        .collect()
}

/// Runs every query and returns the rank of its first hit.
pub async fn run_queries(search: &SearchService, queries: &[Query]) -> anyhow::Result<Vec<Option<usize>>> {
    let mut ranks = Vec::with_capacity(queries.len());
    for q in queries {
        let resp = search
            .search(
                &crate::auth::Access::open(),
                SearchRequest {
                    query: q.query.clone(),
                    k: 10,
                    repos: vec![q.repo.clone()],
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("query {:?}: {e}", q.query))?;
        ranks.push(first_hit(q, &resp.results));
    }
    Ok(ranks)
}

/// Renders metrics as an aligned table.
pub fn table(metrics: &BTreeMap<String, Metrics>) -> String {
    let mut out = format!(
        "{:<20} {:>5} {:>9} {:>9} {:>10} {:>8}\n",
        "group", "n", "recall@1", "recall@5", "recall@10", "MRR@10"
    );
    let mut rows: Vec<_> = metrics.iter().filter(|(k, _)| *k != "all").collect();
    rows.extend(metrics.get_key_value("all"));
    for (k, m) in rows {
        out.push_str(&format!(
            "{:<20} {:>5} {:>9.3} {:>9.3} {:>10.3} {:>8.3}\n",
            k, m.n, m.recall_1, m.recall_5, m.recall_10, m.mrr_10
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(start: u32, end: u32) -> Query {
        Query {
            query: "x".into(),
            repo: "r".into(),
            lang: "rust".into(),
            path: "a.rs".into(),
            start_line: start,
            end_line: end,
        }
    }

    fn h(start: u32, end: u32) -> SearchHit {
        SearchHit {
            repo: "r".into(),
            path: "a.rs".into(),
            start_line: start,
            end_line: end,
            language: "rust".into(),
            kind: "function".into(),
            symbol: None,
            score: 1.0,
            content: String::new(),
            commit: String::new(),
            id: String::new(),
        }
    }

    #[test]
    fn hit_rule_needs_half_overlap() {
        assert!(is_hit(&q(10, 19), &h(15, 40)));
        assert!(!is_hit(&q(10, 19), &h(16, 40)));
        assert!(!is_hit(&q(10, 19), &h(1, 201)));
        let mut other = h(10, 19);
        other.path = "b.rs".into();
        assert!(!is_hit(&q(10, 19), &other));
    }

    #[test]
    fn metrics_aggregate() {
        let qs = vec![q(1, 2), q(1, 2)];
        let m = metrics(&qs, &[Some(0), Some(4)]);
        assert_eq!(m["all"].recall_1, 0.5);
        assert_eq!(m["all"].recall_5, 1.0);
        assert_eq!(m["all"].mrr_10, 0.6);
    }
}
