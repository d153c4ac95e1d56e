//! The embedded backend: Qdrant's engine in-process (`qdrant-edge`),
//! persisted under `<data dir>/store/edge`.
//!
//! `qdrant-edge` is synchronous; every call runs on tokio's blocking pool.
//! Its `flush` asserts that no update is in flight, so updates and searches
//! share a read guard and flushes take the write guard.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use qdrant_edge::{
    CountRequest, CreateIndex, Distance, EdgeConfigBuilder, EdgeShard, EdgeSparseVectorParamsBuilder,
    EdgeVectorParamsBuilder, FieldIndexOperations, Filter, Modifier, NamedQuery, Payload, PayloadFieldSchema,
    PayloadOps, PayloadSchemaType, PointId, PointInsertOperations, PointOperations, PointStructPersisted, QueryEnum,
    ScoredPoint, ScrollRequest, SearchRequest, SetPayloadOp, SparseVector, UpdateOperation, VectorInternal,
    VectorPersisted, VectorStructPersisted, WithPayloadInterface, WithVector,
};
use qdrant_edge::{Record, VectorStructInternal};
use serde_json::{Value, json};

use super::{
    ChunkPayload, ChunkPoint, DENSE, SPARSE, ScoredChunk, SearchFilter, VectorStore, dir_prefixes, split_payload,
};
use crate::error::{IndexError, Result};
use crate::sparse::SparseVec;

/// Payload fields with a keyword index.
const INDEXED_FIELDS: &[&str] = &["repo", "language", "dirs", "run", "path"];

/// `qdrant-edge` shard in a directory.
pub struct EdgeStore {
    shard: Arc<EdgeShard>,
    guard: Arc<RwLock<()>>,
    dim: usize,
    path: PathBuf,
}

fn store_err(context: &str, e: impl std::fmt::Display) -> IndexError {
    IndexError::Store(format!("{context}: {e}"))
}

impl EdgeStore {
    /// Opens the shard at `path`, creating it for vectors of `dim` if absent.
    /// An existing shard built for another dimension is an error.
    pub fn open(path: &Path, dim: usize) -> Result<Self> {
        std::fs::create_dir_all(path).map_err(|e| IndexError::io(format!("failed to create {}", path.display()), e))?;
        let exists = path.join("edge_config.json").exists();
        let shard = if exists {
            let shard =
                EdgeShard::load(path, None).map_err(|e| store_err(&format!("failed to load {}", path.display()), e))?;
            let have = shard.config().vectors.get(DENSE).map(|v| v.size);
            if have != Some(dim) {
                return Err(IndexError::Store(format!(
                    "store at {} holds {:?}-dimensional vectors but the model makes {dim}; \
                     remove the directory or use the model it was built with",
                    path.display(),
                    have
                )));
            }
            shard
        } else {
            let config = EdgeConfigBuilder::new()
                .vector(
                    DENSE,
                    EdgeVectorParamsBuilder::new(dim, Distance::Cosine)
                        .on_disk(false)
                        .build(),
                )
                .sparse_vector(
                    SPARSE,
                    EdgeSparseVectorParamsBuilder::new().modifier(Modifier::Idf).build(),
                )
                .build();
            let shard = EdgeShard::new(path, config)
                .map_err(|e| store_err(&format!("failed to create {}", path.display()), e))?;
            for field in INDEXED_FIELDS {
                shard
                    .update(UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(
                        CreateIndex {
                            field_name: (*field)
                                .try_into()
                                .map_err(|_| IndexError::Store(format!("bad field {field}")))?,
                            field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
                        },
                    )))
                    .map_err(|e| store_err("failed to create payload index", e))?;
            }
            shard
        };
        Ok(Self {
            shard: Arc::new(shard),
            guard: Arc::new(RwLock::new(())),
            dim,
            path: path.to_path_buf(),
        })
    }

    /// Where the shard lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn blocking<T, F>(&self, exclusive: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&EdgeShard) -> Result<T> + Send + 'static,
    {
        let shard = self.shard.clone();
        let guard = self.guard.clone();
        tokio::task::spawn_blocking(move || {
            if exclusive {
                let _g = guard.write();
                f(&shard)
            } else {
                let _g = guard.read();
                f(&shard)
            }
        })
        .await
        .map_err(|e| IndexError::Store(format!("store task failed: {e}")))?
    }

    async fn search(
        &self,
        query: VectorInternal,
        using: &str,
        filter: &SearchFilter,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>> {
        let store_filter = to_filter(filter)?;
        let fetch = if filter.needs_post_filter() { limit * 4 } else { limit };
        let request = SearchRequest {
            query: QueryEnum::Nearest(NamedQuery {
                query,
                using: Some(using.to_string()),
            }),
            filter: store_filter,
            params: None,
            limit: fetch,
            offset: 0,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: Some(WithVector::Bool(false)),
            score_threshold: None,
        };
        let points = self
            .blocking(false, move |s| {
                s.search(request).map_err(|e| store_err("search failed", e))
            })
            .await?;
        let mut hits = Vec::with_capacity(points.len());
        for p in points {
            let hit = to_hit(p)?;
            if filter.accepts_path(&hit.payload.path) {
                hits.push(hit);
            }
        }
        hits.truncate(limit);
        Ok(hits)
    }
}

/// Builds the store filter (Qdrant's JSON filter shape, shared with the
/// server backend).
pub fn filter_json(filter: &SearchFilter) -> Option<Value> {
    let mut must = Vec::new();
    if !filter.repos.is_empty() {
        must.push(json!({"key": "repo", "match": {"any": filter.repos}}));
    }
    if !filter.languages.is_empty() {
        must.push(json!({"key": "language", "match": {"any": filter.languages}}));
    }
    if let Some((dir, _)) = filter.prefix_split()
        && let Some(dir) = dir
    {
        must.push(json!({"key": "dirs", "match": {"value": dir}}));
    }
    if !filter.paths.is_empty() {
        must.push(json!({"key": "path", "match": {"any": filter.paths}}));
    }
    (!must.is_empty()).then(|| json!({ "must": must }))
}

fn to_filter(filter: &SearchFilter) -> Result<Option<Filter>> {
    filter_json(filter)
        .map(|v| serde_json::from_value(v).map_err(|e| store_err("invalid filter", e)))
        .transpose()
}

fn payload_of(p: &ChunkPoint) -> Result<Payload> {
    let mut v = serde_json::to_value(&p.payload).map_err(|e| store_err("payload", e))?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| IndexError::Store("payload is not an object".into()))?;
    obj.insert("dirs".into(), json!(dir_prefixes(&p.payload.path)));
    obj.insert("run".into(), json!(p.run));
    Ok(Payload(obj.clone().into_iter().collect()))
}

fn to_hit(p: ScoredPoint) -> Result<ScoredChunk> {
    let payload = p
        .payload
        .ok_or_else(|| IndexError::Store("hit without payload".into()))?;
    let payload: ChunkPayload = serde_json::from_value(Value::Object(payload.0.into_iter().collect()))
        .map_err(|e| store_err("malformed payload", e))?;
    Ok(ScoredChunk {
        id: p.id.to_string(),
        score: p.score,
        payload,
    })
}

fn to_point(r: Record) -> Result<ChunkPoint> {
    let map = r
        .payload
        .map(|p| p.0.into_iter().collect())
        .ok_or_else(|| IndexError::Store("point without payload".into()))?;
    let (payload, run) = split_payload(map)?;
    let mut dense = Vec::new();
    let mut sparse_vec = SparseVec::default();
    if let Some(VectorStructInternal::Named(vectors)) = r.vector {
        for (name, v) in vectors {
            match (name.as_str(), v) {
                (DENSE, VectorInternal::Dense(d)) => dense = d,
                (SPARSE, VectorInternal::Sparse(s)) => {
                    sparse_vec = SparseVec {
                        indices: s.indices,
                        values: s.values,
                    }
                }
                _ => {}
            }
        }
    }
    Ok(ChunkPoint {
        id: r.id.to_string(),
        run,
        payload,
        dense,
        sparse: sparse_vec,
    })
}

fn sparse(v: &SparseVec) -> Result<SparseVector> {
    SparseVector::new(v.indices.clone(), v.values.clone()).map_err(|e| store_err("invalid sparse vector", e))
}

#[async_trait]
impl VectorStore for EdgeStore {
    fn backend(&self) -> &'static str {
        "edge"
    }

    fn dim(&self) -> usize {
        self.dim
    }

    async fn upsert(&self, points: Vec<ChunkPoint>) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
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
            let vectors = HashMap::from([
                (DENSE.to_string(), VectorPersisted::Dense(p.dense.clone())),
                (SPARSE.to_string(), VectorPersisted::Sparse(sparse(&p.sparse)?)),
            ]);
            list.push(PointStructPersisted {
                id: PointId::Uuid(id),
                vector: VectorStructPersisted::Named(vectors),
                payload: Some(payload_of(p)?),
            });
        }
        let op =
            UpdateOperation::PointOperation(PointOperations::UpsertPoints(PointInsertOperations::PointsList(list)));
        self.blocking(false, move |s| s.update(op).map_err(|e| store_err("upsert failed", e)))
            .await
    }

    async fn delete_stale(&self, repo: &str, keep_run: &str) -> Result<()> {
        let filter: Filter = serde_json::from_value(json!({
            "must": [{"key": "repo", "match": {"value": repo}}],
            "must_not": [{"key": "run", "match": {"value": keep_run}}],
        }))
        .map_err(|e| store_err("invalid filter", e))?;
        let op = UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter));
        self.blocking(false, move |s| s.update(op).map_err(|e| store_err("delete failed", e)))
            .await
    }

    async fn delete_repo(&self, repo: &str) -> Result<()> {
        let filter: Filter = serde_json::from_value(json!({"must": [{"key": "repo", "match": {"value": repo}}]}))
            .map_err(|e| store_err("invalid filter", e))?;
        let op = UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter));
        self.blocking(false, move |s| s.update(op).map_err(|e| store_err("delete failed", e)))
            .await
    }

    async fn delete_paths(&self, repo: &str, paths: &[String], keep_run: &str) -> Result<()> {
        // Bounded filters: a huge change is deleted in slices.
        for slice in paths.chunks(1024) {
            let filter: Filter = serde_json::from_value(json!({
                "must": [
                    {"key": "repo", "match": {"value": repo}},
                    {"key": "path", "match": {"any": slice}},
                ],
                "must_not": [{"key": "run", "match": {"value": keep_run}}],
            }))
            .map_err(|e| store_err("invalid filter", e))?;
            let op = UpdateOperation::PointOperation(PointOperations::DeletePointsByFilter(filter));
            self.blocking(false, move |s| s.update(op).map_err(|e| store_err("delete failed", e)))
                .await?;
        }
        Ok(())
    }

    async fn set_commit(&self, repo: &str, commit: &str) -> Result<()> {
        let filter: Filter = serde_json::from_value(json!({
            "must": [{"key": "repo", "match": {"value": repo}}],
            "must_not": [{"key": "commit", "match": {"value": commit}}],
        }))
        .map_err(|e| store_err("invalid filter", e))?;
        let payload = Payload([("commit".to_string(), json!(commit))].into_iter().collect());
        let op = UpdateOperation::PayloadOperation(PayloadOps::SetPayload(SetPayloadOp {
            payload,
            points: None,
            filter: Some(filter),
            key: None,
        }));
        self.blocking(false, move |s| {
            s.update(op).map_err(|e| store_err("set payload failed", e))
        })
        .await
    }

    async fn scroll_repo(&self, repo: &str) -> Result<Vec<(String, ChunkPayload)>> {
        let filter: Filter = serde_json::from_value(json!({"must": [{"key": "repo", "match": {"value": repo}}]}))
            .map_err(|e| store_err("invalid filter", e))?;
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let request = ScrollRequest {
                offset,
                limit: Some(1024),
                filter: Some(filter.clone()),
                with_payload: Some(WithPayloadInterface::Bool(true)),
                with_vector: WithVector::Bool(false),
                order_by: None,
            };
            let (records, next) = self
                .blocking(false, move |s| {
                    s.scroll(request).map_err(|e| store_err("scroll failed", e))
                })
                .await?;
            for r in records {
                let payload = r
                    .payload
                    .ok_or_else(|| IndexError::Store("point without payload".into()))?;
                let payload: ChunkPayload = serde_json::from_value(Value::Object(payload.0.into_iter().collect()))
                    .map_err(|e| store_err("malformed payload", e))?;
                out.push((r.id.to_string(), payload));
            }
            match next {
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
        self.search(VectorInternal::from(vector), DENSE, filter, limit).await
    }

    async fn search_sparse(&self, vector: SparseVec, filter: &SearchFilter, limit: usize) -> Result<Vec<ScoredChunk>> {
        if vector.indices.is_empty() {
            return Ok(Vec::new());
        }
        self.search(VectorInternal::from(sparse(&vector)?), SPARSE, filter, limit)
            .await
    }

    async fn count(&self, filter: &SearchFilter) -> Result<usize> {
        let filter = to_filter(filter)?;
        self.blocking(false, move |s| {
            s.count(CountRequest { filter, exact: true })
                .map_err(|e| store_err("count failed", e))
        })
        .await
    }

    async fn export(&self, offset: Option<String>, limit: usize) -> Result<(Vec<ChunkPoint>, Option<String>)> {
        let offset = offset
            .map(|o| o.parse::<uuid::Uuid>().map(PointId::Uuid))
            .transpose()
            .map_err(|e| IndexError::InvalidArgument(format!("bad export offset: {e}")))?;
        let request = ScrollRequest {
            offset,
            limit: Some(limit.max(1)),
            filter: None,
            with_payload: Some(WithPayloadInterface::Bool(true)),
            with_vector: WithVector::Bool(true),
            order_by: None,
        };
        let (records, next) = self
            .blocking(false, move |s| {
                s.scroll(request).map_err(|e| store_err("scroll failed", e))
            })
            .await?;
        let points = records.into_iter().map(to_point).collect::<Result<Vec<_>>>()?;
        Ok((points, next.map(|n| n.to_string())))
    }

    async fn get(&self, ids: &[String]) -> Result<Vec<ChunkPoint>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids
            .iter()
            .map(|id| id.parse::<uuid::Uuid>().map(PointId::Uuid))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| IndexError::InvalidArgument(format!("bad point id: {e}")))?;
        let records = self
            .blocking(false, move |s| {
                s.retrieve(
                    &ids,
                    Some(WithPayloadInterface::Bool(true)),
                    Some(WithVector::Bool(true)),
                )
                .map_err(|e| store_err("retrieve failed", e))
            })
            .await?;
        records.into_iter().map(to_point).collect()
    }

    async fn flush(&self) -> Result<()> {
        self.blocking(true, |s| {
            s.flush();
            Ok(())
        })
        .await
    }

    async fn optimize(&self) -> Result<()> {
        self.blocking(true, |s| {
            s.optimize().map_err(|e| store_err("optimize failed", e))?;
            s.flush();
            Ok(())
        })
        .await
    }
}
