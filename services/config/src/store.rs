//! `[store]`: which vector store holds the index.
//!
//! ```toml
//! [store]
//! kind = "qdrant"                 # "edge" (default: embedded, in the data dir) or "qdrant"
//! url = "http://qdrant:6334"      # gRPC endpoint; https:// for TLS
//! api_key_env = "QDRANT_API_KEY"  # optional: variable holding the API key
//! collection = "cairn_chunks"
//! shard_number = 3
//! replication_factor = 2
//! write_consistency_factor = 1
//! on_disk = false                 # dense vectors memory-mapped from disk
//! quantization = "none"           # or "int8" (scalar, kept in RAM)
//! timeout_ms = 30000
//! retries = 4                     # extra attempts for transient failures
//! ```

use std::time::Duration;

use cairn_indexer::store::qdrant::QdrantSettings;
use serde::{Deserialize, Serialize};

/// Which backend.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// `qdrant-edge` in the data directory (one process per directory).
    #[default]
    Edge,
    /// A Qdrant server or cluster over gRPC.
    Qdrant,
}

/// Dense vector quantization on the server.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    #[default]
    None,
    Int8,
}

/// The `[store]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// Qdrant gRPC endpoint (port 6334 by default on a Qdrant server).
    pub url: String,
    /// Environment variable holding the Qdrant API key.
    pub api_key_env: Option<String>,
    /// Resolved from `api_key_env` at load time; never serialized.
    #[serde(skip)]
    pub api_key: Option<String>,
    pub collection: String,
    pub shard_number: u32,
    pub replication_factor: u32,
    pub write_consistency_factor: u32,
    pub on_disk: bool,
    pub quantization: Quantization,
    pub timeout_ms: u64,
    pub retries: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let s = QdrantSettings::default();
        Self {
            kind: StoreKind::Edge,
            url: s.url,
            api_key_env: None,
            api_key: None,
            collection: s.collection,
            shard_number: s.shard_number,
            replication_factor: s.replication_factor,
            write_consistency_factor: s.write_consistency_factor,
            on_disk: s.on_disk,
            quantization: Quantization::None,
            timeout_ms: s.timeout.as_millis() as u64,
            retries: s.attempts - 1,
        }
    }
}

impl StoreConfig {
    /// Adds every problem to `errors`.
    pub fn validate(&self, errors: &mut Vec<String>) {
        if self.kind != StoreKind::Qdrant {
            return;
        }
        if self.api_key_env.is_some() && self.url.starts_with("http://") && !crate::is_loopback_url(&self.url) {
            errors.push(format!(
                "store.api_key_env: the API key would be sent over plain http to {:?}; use https:// (Qdrant's TLS) for a remote server",
                self.url
            ));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            errors.push(format!(
                "store.url: {:?} must be the Qdrant gRPC endpoint, like http://qdrant:6334",
                self.url
            ));
        }
        let name_ok = !self.collection.is_empty()
            && self.collection.len() <= 255
            && self
                .collection
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
        if !name_ok {
            errors.push(format!(
                "store.collection: {:?} must be 1-255 letters, digits, '_' or '-'",
                self.collection
            ));
        }
        if self.shard_number == 0 || self.replication_factor == 0 || self.write_consistency_factor == 0 {
            errors
                .push("store.shard_number, replication_factor and write_consistency_factor must be at least 1".into());
        } else if self.write_consistency_factor > self.replication_factor {
            errors.push(format!(
                "store.write_consistency_factor ({}) cannot exceed replication_factor ({})",
                self.write_consistency_factor, self.replication_factor
            ));
        }
        if self.timeout_ms < 100 {
            errors.push("store.timeout_ms: must be at least 100".into());
        }
        if self.retries > 20 {
            errors.push("store.retries: at most 20".into());
        }
        if self.api_key_env.as_deref().is_some_and(|v| v.starts_with("CAIRN_")) {
            errors.push("store.api_key_env: CAIRN_* variables are configuration keys; name another variable".into());
        }
    }

    /// Reads the API key from the variable `api_key_env` names.
    pub fn resolve_key(&mut self, env: &[(String, String)], errors: &mut Vec<String>) {
        if self.kind != StoreKind::Qdrant {
            return;
        }
        if let Some(var) = self.api_key_env.as_deref().filter(|v| !v.is_empty()) {
            match env.iter().find(|(k, _)| k == var) {
                Some((_, v)) => self.api_key = Some(v.clone()),
                None => errors.push(format!("store.api_key_env: environment variable {var} is not set")),
            }
        }
    }

    /// The backend's settings.
    pub fn qdrant_settings(&self) -> QdrantSettings {
        QdrantSettings {
            url: self.url.clone(),
            api_key: self.api_key.clone(),
            collection: self.collection.clone(),
            shard_number: self.shard_number,
            replication_factor: self.replication_factor,
            write_consistency_factor: self.write_consistency_factor,
            on_disk: self.on_disk,
            quantization: self.quantization == Quantization::Int8,
            timeout: Duration::from_millis(self.timeout_ms),
            attempts: self.retries + 1,
            backoff: Duration::from_millis(200),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_needs_nothing_and_qdrant_is_checked() {
        let mut errors = Vec::new();
        StoreConfig::default().validate(&mut errors);
        assert!(errors.is_empty());
        let bad = StoreConfig {
            kind: StoreKind::Qdrant,
            url: "qdrant:6334".into(),
            collection: "has space".into(),
            replication_factor: 1,
            write_consistency_factor: 2,
            ..Default::default()
        };
        bad.validate(&mut errors);
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn api_key_comes_from_the_named_variable() {
        let mut c = StoreConfig {
            kind: StoreKind::Qdrant,
            api_key_env: Some("QDRANT_KEY".into()),
            ..Default::default()
        };
        let mut errors = Vec::new();
        c.resolve_key(&[("QDRANT_KEY".into(), "k".into())], &mut errors);
        assert_eq!(c.api_key.as_deref(), Some("k"));
        c.resolve_key(&[], &mut errors);
        assert_eq!(errors.len(), 1);
    }
}
