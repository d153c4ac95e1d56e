//! Small JSON documents shared by every process of a deployment: the
//! published repo registry and the indexer lease. With the Qdrant server
//! backend they live in a second collection, `<collection>-meta`, beside the
//! chunks, so retrieval replicas and the indexer need nothing else in common.
//!
//! Writers are kept apart by the lease protocol in `cairn-services`: the
//! lease, and everything only its holder may write, is written with
//! [`MetaStore::put_guarded`], which the store applies only when the
//! document already there is not another live holder's (with Qdrant, a
//! conditional update: `update_filter`, Qdrant 1.16+). Guarded documents
//! carry their `holder` and `expires_at_ms` as top-level payload fields, so
//! the store can evaluate the guard.

use std::collections::HashMap;

use async_trait::async_trait;
use qdrant_client::qdrant::{
    Condition, CreateCollectionBuilder, DeleteCollectionBuilder, Distance, Filter, GetPointsBuilder, PointStruct,
    Range, ReadConsistencyType, UpsertPointsBuilder, VectorParamsBuilder, WriteOrdering, WriteOrderingType,
    read_consistency, value::Kind,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::Value;

use super::qdrant::{QdrantSettings, store_err};
use crate::error::{IndexError, Result};

/// The payload field naming who wrote a guarded document.
pub const HOLDER: &str = "holder";
/// The payload field (milliseconds since the Unix epoch) after which a
/// guarded document no longer protects its holder.
pub const EXPIRES: &str = "expires_at_ms";

/// When [`MetaStore::put_guarded`] may replace the document at a key: when
/// there is none, when it names no holder (written before guards), when
/// its holder is `holder`, or, with `or_expired_before_ms`, when it expires
/// before that time.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    pub holder: String,
    pub or_expired_before_ms: Option<u64>,
}

impl Guard {
    /// Whether the guard lets a write replace `current`.
    pub fn admits(&self, current: Option<&Value>) -> bool {
        let Some(current) = current else {
            return true;
        };
        match current.get(HOLDER).and_then(Value::as_str) {
            None => true,
            Some(h) if h == self.holder => true,
            Some(_) => match (self.or_expired_before_ms, current.get(EXPIRES).and_then(Value::as_u64)) {
                (Some(before), Some(expires)) => expires < before,
                (Some(_), None) => true,
                (None, _) => false,
            },
        }
    }
}

/// A key → JSON document store.
#[async_trait]
pub trait MetaStore: Send + Sync {
    /// Where the documents live, for messages.
    fn describe(&self) -> String;
    /// The document at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Value>>;
    /// Replaces the document at `key`; returns once the store acknowledged it.
    async fn put(&self, key: &str, doc: &Value) -> Result<()>;
    /// Replaces the document at `key` only if `guard` admits the one there,
    /// decided by the store together with the write (no other write comes
    /// between). Whether it wrote is not reported: read the key back.
    async fn put_guarded(&self, key: &str, doc: &Value, guard: &Guard) -> Result<()>;
}

/// Documents in process memory: one process's view, for tests and tools.
#[derive(Default)]
pub struct MemoryMeta(parking_lot::Mutex<HashMap<String, Value>>);

#[async_trait]
impl MetaStore for MemoryMeta {
    fn describe(&self) -> String {
        "process memory".into()
    }

    async fn get(&self, key: &str) -> Result<Option<Value>> {
        Ok(self.0.lock().get(key).cloned())
    }

    async fn put(&self, key: &str, doc: &Value) -> Result<()> {
        self.0.lock().insert(key.to_string(), doc.clone());
        Ok(())
    }

    async fn put_guarded(&self, key: &str, doc: &Value, guard: &Guard) -> Result<()> {
        let mut docs = self.0.lock();
        if guard.admits(docs.get(key)) {
            docs.insert(key.to_string(), doc.clone());
        }
        Ok(())
    }
}

/// Documents as points of the collection `<collection>-meta` (one
/// one-dimensional placeholder vector each; the document is the payload).
pub struct QdrantMeta {
    client: Qdrant,
    settings: QdrantSettings,
    ready: tokio::sync::OnceCell<()>,
}

/// The point id of `key`: a UUID made of the key's hash.
fn point_id(key: &str) -> String {
    let hash = blake3::hash(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_bytes()[..16]);
    uuid::Uuid::from_bytes(bytes).to_string()
}

impl QdrantMeta {
    /// A client for the metadata collection of the chunks collection in
    /// `settings` (created on first use).
    pub fn new(mut settings: QdrantSettings) -> Result<Self> {
        settings.collection = format!("{}-meta", settings.collection);
        Ok(Self {
            client: super::qdrant::client(&settings)?,
            settings,
            ready: tokio::sync::OnceCell::new(),
        })
    }

    /// The collection's name.
    pub fn collection(&self) -> &str {
        &self.settings.collection
    }

    async fn retry<T, F, Fut>(&self, what: &str, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, QdrantError>>,
    {
        super::qdrant::retry(&self.settings, what, op).await
    }

    async fn ready(&self) -> Result<()> {
        self.ready
            .get_or_try_init(|| async {
                let name = self.settings.collection.clone();
                if self
                    .retry("meta collection check", || self.client.collection_exists(&name))
                    .await?
                {
                    return Ok(());
                }
                let create = CreateCollectionBuilder::new(&name)
                    .vectors_config(VectorParamsBuilder::new(1, Distance::Dot))
                    .replication_factor(self.settings.replication_factor)
                    .write_consistency_factor(self.settings.write_consistency_factor)
                    .build();
                match self
                    .retry("create meta collection", || {
                        self.client.create_collection(create.clone())
                    })
                    .await
                {
                    Ok(_) => Ok(()),
                    // another process created it between the check and the create
                    Err(_) if self.client.collection_exists(&name).await.unwrap_or(false) => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .await
            .map(|_| ())
    }

    /// Drops the collection (tests).
    pub async fn drop_collection(&self) -> Result<()> {
        let name = self.settings.collection.clone();
        self.retry("delete meta collection", || {
            self.client
                .delete_collection(DeleteCollectionBuilder::new(&name).build())
        })
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl MetaStore for QdrantMeta {
    fn describe(&self) -> String {
        format!(
            "Qdrant collection {:?} at {}",
            self.settings.collection, self.settings.url
        )
    }

    async fn get(&self, key: &str) -> Result<Option<Value>> {
        self.ready().await?;
        // a majority of replicas: a guarded write acknowledged by them is seen
        let request = GetPointsBuilder::new(&self.settings.collection, vec![point_id(key).into()])
            .with_payload(true)
            .with_vectors(false)
            .read_consistency(read_consistency::Value::Type(ReadConsistencyType::Majority.into()))
            .build();
        let response = self
            .retry("meta get", || self.client.get_points(request.clone()))
            .await?;
        let Some(point) = response.result.into_iter().next() else {
            return Ok(None);
        };
        let text = match point.payload.get("doc").and_then(|v| v.kind.as_ref()) {
            Some(Kind::StringValue(s)) => s.clone(),
            _ => {
                return Err(IndexError::Store(format!(
                    "metadata document {key:?} in {} has no `doc` text",
                    self.describe()
                )));
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| store_err(&format!("metadata document {key:?} is not JSON"), e))
    }

    async fn put(&self, key: &str, doc: &Value) -> Result<()> {
        self.upsert(key, doc, None).await
    }

    async fn put_guarded(&self, key: &str, doc: &Value, guard: &Guard) -> Result<()> {
        let mut may = vec![
            Condition::is_empty(HOLDER),
            Condition::matches(HOLDER, guard.holder.clone()),
        ];
        if let Some(before) = guard.or_expired_before_ms {
            may.push(Condition::is_empty(EXPIRES));
            may.push(Condition::range(
                EXPIRES,
                Range {
                    lt: Some(before as f64),
                    ..Range::default()
                },
            ));
        }
        self.upsert(key, doc, Some(Filter::should(may))).await
    }
}

impl QdrantMeta {
    /// Writes the point of `key` (through the shard leader, so guarded
    /// writes are ordered); with `only_over`, a conditional update that
    /// leaves an existing point that does not match it as it is.
    async fn upsert(&self, key: &str, doc: &Value, only_over: Option<Filter>) -> Result<()> {
        self.ready().await?;
        let mut payload = serde_json::json!({ "key": key, "doc": doc.to_string() });
        for field in [HOLDER, EXPIRES] {
            if let Some(v) = doc.get(field) {
                payload[field] = v.clone();
            }
        }
        let payload = Payload::try_from(payload).map_err(|e| store_err("bad metadata payload", e))?;
        let point = PointStruct::new(point_id(key), vec![1.0f32], payload);
        let mut request = UpsertPointsBuilder::new(&self.settings.collection, vec![point])
            .wait(true)
            .ordering(WriteOrdering {
                r#type: WriteOrderingType::Strong.into(),
            });
        if let Some(filter) = only_over {
            request = request.update_filter(filter);
        }
        let request = request.build();
        self.retry("meta put", || self.client.upsert_points(request.clone()))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_are_stable_uuids_per_key() {
        assert_eq!(point_id("registry"), point_id("registry"));
        assert_ne!(point_id("registry"), point_id("lease"));
        assert!(uuid::Uuid::parse_str(&point_id("lease")).is_ok());
    }

    #[tokio::test]
    async fn guarded_writes_replace_only_what_the_guard_admits() {
        use serde_json::json;
        let m = MemoryMeta::default();
        let mine = |or_expired_before_ms| Guard {
            holder: "a".into(),
            or_expired_before_ms,
        };
        // nothing there, then our own document
        m.put_guarded("k", &json!({"holder": "a", "expires_at_ms": 100, "n": 1}), &mine(None))
            .await
            .unwrap();
        m.put_guarded("k", &json!({"holder": "a", "expires_at_ms": 200, "n": 2}), &mine(None))
            .await
            .unwrap();
        assert_eq!(m.get("k").await.unwrap().unwrap()["n"], 2);
        // another holder's document: kept while it lives, replaced once expired
        let theirs = json!({"holder": "b", "expires_at_ms": 500, "n": 3});
        m.put("k", &theirs).await.unwrap();
        for guard in [mine(None), mine(Some(500)), mine(Some(400))] {
            m.put_guarded("k", &json!({"holder": "a", "n": 4}), &guard)
                .await
                .unwrap();
            assert_eq!(m.get("k").await.unwrap().unwrap(), theirs, "{guard:?}");
        }
        m.put_guarded("k", &json!({"holder": "a", "n": 5}), &mine(Some(501)))
            .await
            .unwrap();
        assert_eq!(m.get("k").await.unwrap().unwrap()["n"], 5);
        // a document written before guards names no holder: anyone replaces it
        m.put("k", &json!({"n": 6})).await.unwrap();
        m.put_guarded("k", &json!({"holder": "a", "n": 7}), &mine(None))
            .await
            .unwrap();
        assert_eq!(m.get("k").await.unwrap().unwrap()["n"], 7);
    }

    #[tokio::test]
    async fn memory_documents_round_trip() {
        let m = MemoryMeta::default();
        assert_eq!(m.get("a").await.unwrap(), None);
        m.put("a", &serde_json::json!({"x": 1})).await.unwrap();
        assert_eq!(m.get("a").await.unwrap(), Some(serde_json::json!({"x": 1})));
    }
}
