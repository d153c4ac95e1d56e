//! `[search]`: how retrieval lists are fused and ranked.

use serde::{Deserialize, Serialize};

/// Most results one request may ask for.
pub const MAX_K: i64 = 100;

/// How the dense and BM25 lists become one ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// Weighted reciprocal-rank fusion: only ranks count.
    #[default]
    Rrf,
    /// Relative score fusion: each list's scores min-max normalised to
    /// 0..1, then a weighted sum (a missing entry counts 0).
    Relative,
    /// Distribution-based score fusion: each list's scores normalised by
    /// mean ± 3 standard deviations, then a weighted sum.
    Dbsf,
}

/// How dense and BM25 results are fused.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RankSettings {
    pub fusion: Fusion,
    /// Candidates fetched from each retriever (at least k).
    pub candidates: usize,
    /// RRF constant: larger flattens the rank curve.
    pub rrf_k: f32,
    /// Weight of the dense list in the fusion.
    pub dense_weight: f32,
    /// Weight of the BM25 list in the fusion.
    pub sparse_weight: f32,
    /// Multiplier on the fused score of `items` chunks (runs of imports,
    /// constants and small declarations): a mild prior for the functions,
    /// methods and types people ask about.
    pub items_weight: f32,
    /// Multiplier on tests, docs, changelogs, examples and generated files
    /// for queries that read like a bug report (a trace, an exception, a
    /// code block, or several paragraphs), unless the query names a test or
    /// a doc file. 1 turns the prior off.
    pub support_weight: f32,
    /// Multiplier on chunks of a file the query names (a path, or a stack
    /// frame's file).
    pub named_path_boost: f32,
    /// Multiplier on chunks whose symbol the query names (a stack frame's
    /// function, or an identifier).
    pub named_symbol_boost: f32,
    /// `group_by: "file"`: a file scores its best chunk plus this share of
    /// its second and its square of its third (0: the best chunk alone).
    pub file_decay: f32,
}

impl Default for RankSettings {
    fn default() -> Self {
        Self {
            fusion: Fusion::Relative,
            candidates: 100,
            rrf_k: 60.0,
            dense_weight: 1.0,
            sparse_weight: 1.0,
            items_weight: 0.8,
            support_weight: 0.5,
            named_path_boost: 1.5,
            named_symbol_boost: 1.3,
            file_decay: 0.5,
        }
    }
}
