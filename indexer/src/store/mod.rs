//! Vector stores: one trait, one data model, several backends.
//!
//! Every backend keeps one collection of points; a point is a chunk with a
//! named dense vector ([`DENSE`]), a BM25 sparse vector ([`SPARSE`], IDF
//! applied by the store) and a payload ([`ChunkPayload`]). Filters
//! ([`SearchFilter`]) are evaluated inside the store's query, never on results.
//!
//! # Layout
//! - [`edge`]: the embedded backend on `qdrant-edge`, persisted in the data dir.
//! - [`qdrant`]: a Qdrant server or cluster over gRPC (`qdrant-client`).

pub mod edge;
pub mod meta;
pub mod qdrant;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::sparse::SparseVec;

/// Name of the dense vector in every backend.
pub const DENSE: &str = "dense";
/// Name of the BM25 sparse vector in every backend.
pub const SPARSE: &str = "bm25";

/// What a point carries besides its vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkPayload {
    pub repo: String,
    pub path: String,
    pub language: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub start_line: u32,
    pub end_line: u32,
    /// Commit the chunk was indexed at (empty for plain directories).
    pub commit: String,
    /// Git blob id (or content hash for plain directories) of the file.
    pub blob: String,
    pub content: String,
}

/// A point to write.
#[derive(Debug, Clone)]
pub struct ChunkPoint {
    /// Deterministic UUID (see [`crate::pipeline::point_id`]).
    pub id: String,
    /// The indexing run that last wrote this point; stale points of a repo
    /// are the ones whose run differs from the latest complete run.
    pub run: String,
    pub payload: ChunkPayload,
    pub dense: Vec<f32>,
    pub sparse: SparseVec,
}

/// Splits a stored payload into the chunk payload and the run id
/// (the `dirs` field is derived, so it is dropped).
pub fn split_payload(mut map: serde_json::Map<String, serde_json::Value>) -> Result<(ChunkPayload, String)> {
    let run = match map.remove("run") {
        Some(serde_json::Value::String(r)) => r,
        _ => String::new(),
    };
    map.remove("dirs");
    let payload = serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| crate::error::IndexError::Store(format!("malformed payload: {e}")))?;
    Ok((payload, run))
}

/// A search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredChunk {
    pub id: String,
    pub score: f32,
    pub payload: ChunkPayload,
}

/// Restrictions applied inside the store query. Empty fields do not restrict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchFilter {
    pub repos: Vec<String>,
    pub languages: Vec<String>,
    pub path_prefix: Option<String>,
    /// Exact repository-relative paths (any of them); empty: every path.
    pub paths: Vec<String>,
}

impl SearchFilter {
    /// The directory part of the path prefix, which the store matches against
    /// the indexed `dirs` payload; `None` when the prefix is a whole directory.
    ///
    /// `src/ser` → store filter on `src/`, the rest is checked on the hits.
    pub fn prefix_split(&self) -> Option<(Option<&str>, &str)> {
        let p = self.path_prefix.as_deref().filter(|p| !p.is_empty())?;
        let dir = p.rfind('/').map(|i| &p[..=i]);
        Some((dir, p))
    }

    /// True when `path` passes the path-prefix part of the filter.
    pub fn accepts_path(&self, path: &str) -> bool {
        self.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
    }

    /// Whether hits need checking after the store query (a prefix that ends
    /// inside a file or directory name).
    pub fn needs_post_filter(&self) -> bool {
        self.path_prefix
            .as_deref()
            .is_some_and(|p| !p.is_empty() && !p.ends_with('/'))
    }
}

/// All directory prefixes of a path, each ending in `/`: `a/b/c.rs` → `a/`, `a/b/`.
pub fn dir_prefixes(path: &str) -> Vec<String> {
    path.match_indices('/').map(|(i, _)| path[..=i].to_string()).collect()
}

/// Storage of chunk points. Writes return only after the store acknowledged
/// them; [`VectorStore::flush`] makes them durable.
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Backend name for logs and status.
    fn backend(&self) -> &'static str;
    /// Dense vector dimension of the collection.
    fn dim(&self) -> usize;
    /// Inserts or replaces points.
    async fn upsert(&self, points: Vec<ChunkPoint>) -> Result<()>;
    /// Deletes every point of `repo` not written by run `keep_run`.
    async fn delete_stale(&self, repo: &str, keep_run: &str) -> Result<()>;
    /// Deletes every point of `repo`.
    async fn delete_repo(&self, repo: &str) -> Result<()>;
    /// Deletes the points of `repo` whose `path` is one of `paths` and that
    /// were not written by run `keep_run` (an incremental run's changed and
    /// removed files).
    async fn delete_paths(&self, repo: &str, paths: &[String], keep_run: &str) -> Result<()>;
    /// Sets the `commit` payload of every point of `repo` (an incremental
    /// run moves the points of unchanged files to the new commit).
    async fn set_commit(&self, repo: &str, commit: &str) -> Result<()>;
    /// Every point of `repo` as (id, payload), sorted by id: for checks and
    /// tests, not for the query path.
    async fn scroll_repo(&self, repo: &str) -> Result<Vec<(String, ChunkPayload)>>;
    /// Nearest neighbours of a dense query vector.
    async fn search_dense(&self, vector: Vec<f32>, filter: &SearchFilter, limit: usize) -> Result<Vec<ScoredChunk>>;
    /// Best BM25 matches of a sparse query vector.
    async fn search_sparse(&self, vector: SparseVec, filter: &SearchFilter, limit: usize) -> Result<Vec<ScoredChunk>>;
    /// Number of points passing `filter`.
    async fn count(&self, filter: &SearchFilter) -> Result<usize>;
    /// One page of every point, vectors and run included, in id order,
    /// starting after `offset` (a point id from the previous page); returns
    /// the page and the offset of the next one (`None` at the end). For
    /// copying a store to another backend without re-embedding.
    async fn export(&self, offset: Option<String>, limit: usize) -> Result<(Vec<ChunkPoint>, Option<String>)>;
    /// The stored points among `ids`, vectors and run included, in no
    /// particular order; ids that are not stored are left out. The indexer
    /// asks for the points it is about to write before embedding them: a
    /// point with the same id and content already holds the vector (with a
    /// Qdrant server, the collection is the embedding cache that every
    /// indexer shares).
    async fn get(&self, ids: &[String]) -> Result<Vec<ChunkPoint>>;
    /// Checks the store is reachable and its collection matches (a server
    /// backend connects lazily; the embedded one is checked when opened).
    async fn check(&self) -> Result<()> {
        Ok(())
    }
    /// Makes acknowledged writes durable.
    async fn flush(&self) -> Result<()>;
    /// Compacts and indexes (vector index, vacuum); may take seconds and
    /// hold writes back meanwhile. Full builds call it; incremental runs do
    /// not (the indexer daemon calls it when idle), because an embedded
    /// shard moves every point it updates out of optimized segments, so an
    /// optimize after each run would rebuild the whole index each time.
    async fn optimize(&self) -> Result<()> {
        self.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_prefixes_of_nested_path() {
        assert_eq!(dir_prefixes("a/b/c.rs"), ["a/", "a/b/"]);
        assert!(dir_prefixes("c.rs").is_empty());
    }

    #[test]
    fn prefix_split_separates_directory_and_rest() {
        let f = SearchFilter {
            path_prefix: Some("src/ser".into()),
            ..Default::default()
        };
        assert_eq!(f.prefix_split(), Some((Some("src/"), "src/ser")));
        assert!(f.needs_post_filter());
        assert!(f.accepts_path("src/ser.rs") && !f.accepts_path("src/de.rs"));
        let f = SearchFilter {
            path_prefix: Some("src/".into()),
            ..Default::default()
        };
        assert!(!f.needs_post_filter());
        let f = SearchFilter {
            path_prefix: Some("READ".into()),
            ..Default::default()
        };
        assert_eq!(f.prefix_split(), Some((None, "READ")));
    }
}
