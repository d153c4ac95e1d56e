//! The server backend: a Qdrant server or cluster through `qdrant-client`
//! (gRPC), for deployments that outgrow one machine.
//!
//! Same data model as [`super::edge`]: one collection with a named dense
//! vector ([`DENSE`], cosine), a BM25 sparse vector ([`SPARSE`], IDF applied
//! by Qdrant) and the [`ChunkPayload`] plus `dirs` and `run`, with keyword
//! indexes on the fields filters use. [`QdrantStore::connect`] creates the
//! collection and its payload indexes when missing and checks that an
//! existing one matches (dimension, distance, sparse vector); a mismatch is an
//! error that says what differs.
//!
//! Writes wait for the server's acknowledgement (`wait = true`, with the
//! configured write ordering), so the indexer's checkpoint moves only after
//! the points are stored. Transient failures (unavailable, deadline,
//! resource exhausted) are retried with exponential backoff; when the server
//! stays down the error is a [`IndexError::Store`], which the services map to
//! 503 / `UNAVAILABLE` — the process never crashes and nothing acknowledged
//! is lost.

use std::time::Duration;

use async_trait::async_trait;
use qdrant_client::qdrant::{
    Condition, CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder, DeleteCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, Modifier, NamedVectors, PointId, PointStruct, QueryPointsBuilder,
    ScalarQuantizationBuilder, ScoredPoint, SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpsertPointsBuilder,
    Vector, VectorInput, VectorParamsBuilder, VectorsConfigBuilder, point_id::PointIdOptions, vectors_config,
};
use qdrant_client::qdrant::{
    GetPointsBuilder, RetrievedPoint, ScrollPointsBuilder, SetPayloadPointsBuilder, vector_output, vectors_output,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::{Value, json};

use super::{
    ChunkPayload, ChunkPoint, DENSE, SPARSE, ScoredChunk, SearchFilter, VectorStore, dir_prefixes, split_payload,
};
use crate::error::{IndexError, Result};
use crate::sparse::SparseVec;

/// Payload fields with a keyword index (the same as the embedded backend's).
const INDEXED_FIELDS: &[&str] = &["repo", "language", "dirs", "run", "path"];

/// How to reach and lay out the collection.
#[derive(Debug, Clone, PartialEq)]
pub struct QdrantSettings {
    /// gRPC endpoint, e.g. `http://qdrant:6334` (`https://` for TLS).
    pub url: String,
    /// API key (read by the caller from the environment variable it names).
    pub api_key: Option<String>,
    /// Collection holding the chunk points.
    pub collection: String,
    pub shard_number: u32,
    pub replication_factor: u32,
    pub write_consistency_factor: u32,
    /// Keep dense vectors on disk (memory-mapped) instead of in RAM.
    pub on_disk: bool,
    /// Scalar int8 quantization of the dense vectors (kept in RAM).
    pub quantization: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts for a transient failure before giving up (at least 1).
    pub attempts: u32,
    /// First retry delay; doubles per attempt.
    pub backoff: Duration,
}

impl Default for QdrantSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:6334".into(),
            api_key: None,
            collection: "cairn_chunks".into(),
            shard_number: 1,
            replication_factor: 1,
            write_consistency_factor: 1,
            on_disk: false,
            quantization: false,
            timeout: Duration::from_secs(30),
            attempts: 5,
            backoff: Duration::from_millis(200),
        }
    }
}

/// A collection on a Qdrant server.
pub struct QdrantStore {
    client: Qdrant,
    settings: QdrantSettings,
    dim: usize,
    /// Set once the collection is known to exist and match.
    ready: tokio::sync::OnceCell<()>,
}

pub(crate) fn store_err(context: &str, e: impl std::fmt::Display) -> IndexError {
    IndexError::Store(format!("{context}: {e}"))
}

/// Whether a failure may succeed when tried again.
fn transient(e: &QdrantError) -> bool {
    match e {
        QdrantError::ResponseError { status } => matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown | tonic::Code::Aborted
        ),
        QdrantError::ResourceExhaustedError { .. } | QdrantError::Io(_) => true,
        _ => false,
    }
}

/// A gRPC client for `settings` (nothing is sent until the first request).
pub(crate) fn client(settings: &QdrantSettings) -> Result<Qdrant> {
    Qdrant::from_url(&settings.url)
        .api_key(settings.api_key.clone())
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
        .skip_compatibility_check()
        .build()
        .map_err(|e| store_err(&format!("invalid Qdrant url {:?}", settings.url), e))
}

/// The names of every collection on the server of `settings`.
pub async fn collections(settings: &QdrantSettings) -> Result<Vec<String>> {
    let client = client(settings)?;
    let response = retry(settings, "list collections", || client.list_collections()).await?;
    Ok(response.collections.into_iter().map(|c| c.name).collect())
}

/// Runs `op` until it succeeds, fails permanently, or runs out of
/// `settings.attempts` (transient errors back off exponentially).
pub(crate) async fn retry<T, F, Fut>(settings: &QdrantSettings, what: &str, op: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, QdrantError>>,
{
    let attempts = settings.attempts.max(1);
    let mut delay = settings.backoff;
    for attempt in 1..=attempts {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && attempt < attempts => {
                tracing::warn!(what, attempt, error = %e, "Qdrant request failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(store_err(&format!("Qdrant {what} failed"), e)),
        }
    }
    Err(IndexError::Store(format!("Qdrant {what} failed")))
}

impl QdrantStore {
    /// A client for `settings`; nothing is sent until the first request
    /// (or [`VectorStore::check`]), which creates the collection (and its
    /// payload indexes) for vectors of `dim` if it is missing, or checks
    /// that the existing one matches.
    pub fn new(settings: QdrantSettings, dim: usize) -> Result<Self> {
        Ok(Self {
            client: client(&settings)?,
            settings,
            dim,
            ready: tokio::sync::OnceCell::new(),
        })
    }

    /// [`QdrantStore::new`], then the collection check.
    pub async fn connect(settings: QdrantSettings, dim: usize) -> Result<Self> {
        let store = Self::new(settings, dim)?;
        store.ready().await?;
        Ok(store)
    }

    /// Ensures the collection once; a failure is retried by the next call.
    async fn ready(&self) -> Result<()> {
        self.ready
            .get_or_try_init(|| self.ensure_collection())
            .await
            .map(|_| ())
    }

    /// The collection name.
    pub fn collection(&self) -> &str {
        &self.settings.collection
    }

    /// Runs `op` with [`retry`] under this store's settings.
    async fn retry<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, QdrantError>>,
    {
        retry(&self.settings, what, op).await
    }

    async fn ensure_collection(&self) -> Result<()> {
        tracing::debug!(url = %self.settings.url, collection = %self.settings.collection, "checking the Qdrant collection");
        let name = self.settings.collection.clone();
        let exists = self
            .retry("collection check", || self.client.collection_exists(&name))
            .await?;
        if exists {
            return self.check_collection().await;
        }
        let mut vectors = VectorsConfigBuilder::default();
        vectors.add_named_vector_params(
            DENSE,
            VectorParamsBuilder::new(self.dim as u64, Distance::Cosine).on_disk(self.settings.on_disk),
        );
        let mut sparse = SparseVectorsConfigBuilder::default();
        sparse.add_named_vector_params(
            SPARSE,
            SparseVectorParamsBuilder::default().modifier(Modifier::Idf as i32),
        );
        let mut create = CreateCollectionBuilder::new(&name)
            .vectors_config(vectors)
            .sparse_vectors_config(sparse)
            .shard_number(self.settings.shard_number)
            .replication_factor(self.settings.replication_factor)
            .write_consistency_factor(self.settings.write_consistency_factor);
        if self.settings.quantization {
            create = create.quantization_config(ScalarQuantizationBuilder::default().always_ram(true));
        }
        let create = create.build();
        match self
            .retry("create collection", || self.client.create_collection(create.clone()))
            .await
        {
            Ok(_) => {}
            // another replica created it between the check and the create
            Err(_) if self.client.collection_exists(&name).await.unwrap_or(false) => {
                return self.check_collection().await;
            }
            Err(e) => return Err(e),
        }
        for field in INDEXED_FIELDS {
            let request = CreateFieldIndexCollectionBuilder::new(&name, *field, FieldType::Keyword).wait(true);
            self.retry("create payload index", || {
                self.client.create_field_index(request.clone())
            })
            .await?;
        }
        tracing::info!(collection = %name, dim = self.dim, "created the Qdrant collection");
        Ok(())
    }

    async fn check_collection(&self) -> Result<()> {
        let name = &self.settings.collection;
        let info = self
            .retry("collection info", || self.client.collection_info(name))
            .await?;
        let params = info
            .result
            .and_then(|r| r.config)
            .and_then(|c| c.params)
            .ok_or_else(|| IndexError::Store(format!("collection {name:?} reported no parameters")))?;
        let dense = match params.vectors_config.and_then(|v| v.config) {
            Some(vectors_config::Config::ParamsMap(map)) => map.map.get(DENSE).cloned(),
            _ => None,
        };
        let Some(dense) = dense else {
            return Err(IndexError::Store(format!(
                "collection {name:?} exists but has no named vector {DENSE:?}; \
                 it was not created by cairn: choose another [store] collection"
            )));
        };
        if dense.size != self.dim as u64 || dense.distance != Distance::Cosine as i32 {
            return Err(IndexError::Store(format!(
                "collection {name:?} holds {}-dimensional vectors (distance {}) but the model makes \
                 {}-dimensional cosine vectors; use the model it was built with or another collection",
                dense.size,
                Distance::try_from(dense.distance)
                    .map(|d| d.as_str_name())
                    .unwrap_or("unknown"),
                self.dim
            )));
        }
        let has_sparse = params.sparse_vectors_config.is_some_and(|s| s.map.contains_key(SPARSE));
        if !has_sparse {
            return Err(IndexError::Store(format!(
                "collection {name:?} has no sparse vector {SPARSE:?}; it was not created by cairn"
            )));
        }
        Ok(())
    }

    /// Drops the collection (tests and `store copy --replace`).
    pub async fn drop_collection(&self) -> Result<()> {
        let name = self.settings.collection.clone();
        self.retry("delete collection", || {
            self.client
                .delete_collection(DeleteCollectionBuilder::new(&name).build())
        })
        .await?;
        Ok(())
    }

    async fn search(
        &self,
        query: VectorInput,
        using: &str,
        filter: &SearchFilter,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>> {
        let fetch = if filter.needs_post_filter() { limit * 4 } else { limit };
        let mut request = QueryPointsBuilder::new(&self.settings.collection)
            .query(query)
            .using(using)
            .limit(fetch as u64)
            .with_payload(true);
        if let Some(f) = to_filter(filter) {
            request = request.filter(f);
        }
        let request = request.build();
        let response = self.retry("search", || self.client.query(request.clone())).await?;
        let mut hits = Vec::with_capacity(response.result.len());
        for p in response.result {
            let hit = to_hit(p)?;
            if filter.accepts_path(&hit.payload.path) {
                hits.push(hit);
            }
        }
        hits.truncate(limit);
        Ok(hits)
    }

    async fn delete_by(&self, filter: Filter) -> Result<()> {
        self.ready().await?;
        let request = DeletePointsBuilder::new(&self.settings.collection)
            .points(filter)
            .wait(true)
            .build();
        self.retry("delete", || self.client.delete_points(request.clone()))
            .await?;
        Ok(())
    }
}

/// The store filter for a search filter (the same conditions as the
/// embedded backend's [`super::edge::filter_json`]).
fn to_filter(filter: &SearchFilter) -> Option<Filter> {
    let mut must = Vec::new();
    if !filter.repos.is_empty() {
        must.push(Condition::matches("repo", filter.repos.clone()));
    }
    if !filter.languages.is_empty() {
        must.push(Condition::matches("language", filter.languages.clone()));
    }
    if let Some((Some(dir), _)) = filter.prefix_split() {
        must.push(Condition::matches("dirs", dir.to_string()));
    }
    if !filter.paths.is_empty() {
        must.push(Condition::matches("path", filter.paths.clone()));
    }
    (!must.is_empty()).then(|| Filter::must(must))
}

fn payload_of(p: &ChunkPoint) -> Result<Payload> {
    let mut v = serde_json::to_value(&p.payload).map_err(|e| store_err("payload", e))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| IndexError::Store("payload is not an object".into()))?;
    obj.insert("dirs".into(), json!(dir_prefixes(&p.payload.path)));
    obj.insert("run".into(), json!(p.run));
    Ok(Payload::from(obj.clone()))
}

fn id_string(id: Option<PointId>) -> String {
    match id.and_then(|i| i.point_id_options) {
        Some(PointIdOptions::Uuid(u)) => u,
        Some(PointIdOptions::Num(n)) => n.to_string(),
        None => String::new(),
    }
}

fn to_hit(p: ScoredPoint) -> Result<ScoredChunk> {
    let map: serde_json::Map<String, Value> = p.payload.into_iter().map(|(k, v)| (k, v.into_json())).collect();
    let payload: ChunkPayload =
        serde_json::from_value(Value::Object(map)).map_err(|e| store_err("malformed payload", e))?;
    Ok(ScoredChunk {
        id: id_string(p.id),
        score: p.score,
        payload,
    })
}

fn to_point(p: RetrievedPoint) -> Result<ChunkPoint> {
    let map: serde_json::Map<String, Value> = p.payload.into_iter().map(|(k, v)| (k, v.into_json())).collect();
    let (payload, run) = split_payload(map)?;
    let mut dense = Vec::new();
    let mut sparse = SparseVec::default();
    if let Some(vectors_output::VectorsOptions::Vectors(named)) = p.vectors.and_then(|v| v.vectors_options) {
        for (name, v) in named.vectors {
            match (name.as_str(), v.vector) {
                (DENSE, Some(vector_output::Vector::Dense(d))) => dense = d.data,
                (SPARSE, Some(vector_output::Vector::Sparse(s))) => {
                    sparse = SparseVec {
                        indices: s.indices,
                        values: s.values,
                    }
                }
                _ => {}
            }
        }
    }
    Ok(ChunkPoint {
        id: id_string(p.id),
        run,
        payload,
        dense,
        sparse,
    })
}

#[async_trait]
impl VectorStore for QdrantStore {
    fn backend(&self) -> &'static str {
        "qdrant"
    }

    fn dim(&self) -> usize {
        self.dim
    }

    async fn upsert(&self, points: Vec<ChunkPoint>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        self.ready().await?;
        let mut list = Vec::with_capacity(points.len());
        for p in &points {
            if p.dense.len() != self.dim {
                return Err(IndexError::InvalidArgument(format!(
                    "vector of dimension {} for a {}-dimensional store",
                    p.dense.len(),
                    self.dim
                )));
            }
            let id: uuid::Uuid = p.id.parse().map_err(|e| store_err("point id", e))?;
            let vectors = NamedVectors::default()
                .add_vector(DENSE, Vector::new_dense(p.dense.clone()))
                .add_vector(
                    SPARSE,
                    Vector::new_sparse(p.sparse.indices.clone(), p.sparse.values.clone()),
                );
            list.push(PointStruct::new(id.to_string(), vectors, payload_of(p)?));
        }
        let request = UpsertPointsBuilder::new(&self.settings.collection, list)
            .wait(true)
            .build();
        self.retry("upsert", || self.client.upsert_points(request.clone()))
            .await?;
        Ok(())
    }

    async fn delete_stale(&self, repo: &str, keep_run: &str) -> Result<()> {
        let filter = Filter {
            must: vec![Condition::matches("repo", repo.to_string())],
            must_not: vec![Condition::matches("run", keep_run.to_string())],
            ..Default::default()
        };
        self.delete_by(filter).await
    }

    async fn delete_repo(&self, repo: &str) -> Result<()> {
        self.delete_by(Filter::must([Condition::matches("repo", repo.to_string())]))
            .await
    }

    async fn delete_paths(&self, repo: &str, paths: &[String], keep_run: &str) -> Result<()> {
        // bounded filters: a huge change is deleted in slices
        for slice in paths.chunks(1024) {
            let filter = Filter {
                must: vec![
                    Condition::matches("repo", repo.to_string()),
                    Condition::matches("path", slice.to_vec()),
                ],
                must_not: vec![Condition::matches("run", keep_run.to_string())],
                ..Default::default()
            };
            self.delete_by(filter).await?;
        }
        Ok(())
    }

    async fn set_commit(&self, repo: &str, commit: &str) -> Result<()> {
        self.ready().await?;
        let filter = Filter {
            must: vec![Condition::matches("repo", repo.to_string())],
            must_not: vec![Condition::matches("commit", commit.to_string())],
            ..Default::default()
        };
        let mut payload = Payload::new();
        payload.insert("commit", commit.to_string());
        let request = SetPayloadPointsBuilder::new(&self.settings.collection, payload)
            .points_selector(filter)
            .wait(true)
            .build();
        self.retry("set payload", || self.client.set_payload(request.clone()))
            .await?;
        Ok(())
    }

    async fn scroll_repo(&self, repo: &str) -> Result<Vec<(String, ChunkPayload)>> {
        self.ready().await?;
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.settings.collection)
                .filter(Filter::must([Condition::matches("repo", repo.to_string())]))
                .limit(1024)
                .with_payload(true)
                .with_vectors(false);
            if let Some(o) = offset.take() {
                request = request.offset(o);
            }
            let request = request.build();
            let response = self.retry("scroll", || self.client.scroll(request.clone())).await?;
            for p in response.result {
                let point = to_point(p)?;
                out.push((point.id, point.payload));
            }
            match response.next_page_offset {
                Some(n) => offset = Some(n),
                None => break,
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn search_dense(&self, vector: Vec<f32>, filter: &SearchFilter, limit: usize) -> Result<Vec<ScoredChunk>> {
        if vector.len() != self.dim {
            return Err(IndexError::InvalidArgument(format!(
                "query vector of dimension {}",
                vector.len()
            )));
        }
        self.search(VectorInput::new_dense(vector), DENSE, filter, limit).await
    }

    async fn search_sparse(&self, vector: SparseVec, filter: &SearchFilter, limit: usize) -> Result<Vec<ScoredChunk>> {
        if vector.indices.is_empty() {
            return Ok(Vec::new());
        }
        self.search(
            VectorInput::new_sparse(vector.indices, vector.values),
            SPARSE,
            filter,
            limit,
        )
        .await
    }

    async fn count(&self, filter: &SearchFilter) -> Result<usize> {
        self.ready().await?;
        let mut request = CountPointsBuilder::new(&self.settings.collection).exact(true);
        if let Some(f) = to_filter(filter) {
            request = request.filter(f);
        }
        let request = request.build();
        let response = self.retry("count", || self.client.count(request.clone())).await?;
        Ok(response.result.map(|r| r.count as usize).unwrap_or(0))
    }

    async fn export(&self, offset: Option<String>, limit: usize) -> Result<(Vec<ChunkPoint>, Option<String>)> {
        self.ready().await?;
        let mut request = ScrollPointsBuilder::new(&self.settings.collection)
            .limit(limit.max(1) as u32)
            .with_payload(true)
            .with_vectors(true);
        if let Some(o) = offset {
            request = request.offset(PointId::from(o));
        }
        let request = request.build();
        let response = self.retry("scroll", || self.client.scroll(request.clone())).await?;
        let points = response.result.into_iter().map(to_point).collect::<Result<Vec<_>>>()?;
        let next = response.next_page_offset.map(|id| id_string(Some(id)));
        Ok((points, next))
    }

    async fn get(&self, ids: &[String]) -> Result<Vec<ChunkPoint>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.ready().await?;
        let ids: Vec<PointId> = ids.iter().map(|id| PointId::from(id.clone())).collect();
        let request = GetPointsBuilder::new(&self.settings.collection, ids)
            .with_payload(true)
            .with_vectors(true)
            .build();
        let response = self.retry("get", || self.client.get_points(request.clone())).await?;
        response.result.into_iter().map(to_point).collect()
    }

    async fn check(&self) -> Result<()> {
        self.ready().await
    }

    /// Writes are durable once acknowledged (`wait = true`); nothing to do.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_the_embedded_backend() {
        assert!(to_filter(&SearchFilter::default()).is_none());
        let f = to_filter(&SearchFilter {
            repos: vec!["a".into(), "b".into()],
            languages: vec!["rust".into()],
            path_prefix: Some("src/ser".into()),
            paths: vec!["src/server.rs".into()],
        })
        .expect("filter");
        assert_eq!(f.must.len(), 4);
        // a prefix without a directory part filters on the hits only
        let f = to_filter(&SearchFilter {
            path_prefix: Some("READ".into()),
            ..Default::default()
        });
        assert!(f.is_none());
    }

    #[test]
    fn transient_errors_are_retried_permanent_ones_are_not() {
        let unavailable = QdrantError::ResponseError {
            status: tonic::Status::unavailable("down"),
        };
        let invalid = QdrantError::ResponseError {
            status: tonic::Status::invalid_argument("bad"),
        };
        assert!(transient(&unavailable));
        assert!(!transient(&invalid));
    }

    #[test]
    fn point_ids_round_trip() {
        let id = uuid::Uuid::new_v4().to_string();
        assert_eq!(id_string(Some(PointId::from(id.clone()))), id);
        assert_eq!(id_string(Some(PointId::from(7u64))), "7");
    }
}
