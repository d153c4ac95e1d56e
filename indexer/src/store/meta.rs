//! Small JSON documents shared by every process of a deployment: the
//! published repo registry and the indexer lease. With the Qdrant server
//! backend they live in a second collection, `<collection>-meta`, beside the
//! chunks, so retrieval replicas and the indexer need nothing else in common.
//!
//! Qdrant has no compare-and-swap; writers are kept apart by the lease
//! protocol in `cairn-services` (write, wait, read back), and only the lease
//! holder writes anything else.

use std::collections::HashMap;

use async_trait::async_trait;
use qdrant_client::qdrant::{
    CreateCollectionBuilder, DeleteCollectionBuilder, Distance, GetPointsBuilder, PointStruct, UpsertPointsBuilder,
    VectorParamsBuilder, value::Kind,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::Value;

use super::qdrant::QdrantSettings;
use crate::error::{IndexError, Result};

/// A key → JSON document store.
#[async_trait]
pub trait MetaStore: Send + Sync {
    /// Where the documents live, for messages.
    fn describe(&self) -> String;
    /// The document at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Value>>;
    /// Replaces the document at `key`; returns once the store acknowledged it.
    async fn put(&self, key: &str, doc: &Value) -> Result<()>;
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
}

/// Documents as points of the collection `<collection>-meta` (one
/// one-dimensional placeholder vector each; the document is the payload).
pub struct QdrantMeta {
    client: Qdrant,
    settings: QdrantSettings,
    ready: tokio::sync::OnceCell<()>,
}

fn store_err(context: &str, e: impl std::fmt::Display) -> IndexError {
    IndexError::Store(format!("{context}: {e}"))
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
        let request = GetPointsBuilder::new(&self.settings.collection, vec![point_id(key).into()])
            .with_payload(true)
            .with_vectors(false)
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
        self.ready().await?;
        let payload = Payload::try_from(serde_json::json!({ "key": key, "doc": doc.to_string() }))
            .map_err(|e| store_err("bad metadata payload", e))?;
        let point = PointStruct::new(point_id(key), vec![1.0f32], payload);
        let request = UpsertPointsBuilder::new(&self.settings.collection, vec![point])
            .wait(true)
            .build();
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
    async fn memory_documents_round_trip() {
        let m = MemoryMeta::default();
        assert_eq!(m.get("a").await.unwrap(), None);
        m.put("a", &serde_json::json!({"x": 1})).await.unwrap();
        assert_eq!(m.get("a").await.unwrap(), Some(serde_json::json!({"x": 1})));
    }
}
