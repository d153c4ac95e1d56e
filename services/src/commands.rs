//! The `cairn` commands as library functions, shared by `main`, the eval and
//! the benches: open the data dir, load the model and the store, index, serve.

use std::path::Path;
use std::sync::Arc;

use cairn_indexer::chunk::{Chunker, ChunkerConfig};
use cairn_indexer::datadir::DataDir;
use cairn_indexer::embed::{Embed, EmbedderConfig, HashEmbedder, OnnxEmbedder};
use cairn_indexer::pipeline::{IndexOptions, IndexReport};
use cairn_indexer::repo::{RepoIndexer, RepoSpec, RunProgress, RunReport};
use cairn_indexer::source::FileLimits;
use cairn_indexer::store::VectorStore;
use cairn_indexer::store::edge::EdgeStore;
use cairn_indexer::store::qdrant::QdrantStore;

use crate::config::Config;
use crate::server::AppState;
use crate::store_config::StoreKind;

/// An open index: the locked data dir, the embedder and the store.
///
/// Fields drop in order: the store flushes before the data dir's lock is
/// released, so no other process can open the directory mid-flush.
pub struct Engine {
    pub store: Arc<dyn VectorStore>,
    pub embedder: Arc<dyn Embed>,
    pub chunker: Arc<Chunker>,
    pub data: DataDir,
}

/// Dimension of the test embedder (`[embed] kind = "hash"`).
pub const HASH_EMBED_DIM: usize = 64;

/// Loads the configured ONNX embedder.
pub fn load_embedder(config: &Config) -> anyhow::Result<OnnxEmbedder> {
    let ec = EmbedderConfig {
        runtime_library: config.runtime_library(),
        model_dir: config.model_dir(),
        settings: config.embed.model.clone(),
        threads: config.embed.threads,
        sessions: config.embed.sessions,
        provider: config.embed.provider,
        batch_tokens: config.embed.batch_tokens,
    };
    Ok(OnnxEmbedder::load(&ec)?)
}

impl Engine {
    /// Locks the data dir (failing at once if another process holds it),
    /// then loads the model and opens the store.
    pub fn open(config: &Config, holder: &str) -> anyhow::Result<Self> {
        let data = DataDir::open(&config.data_dir, holder)?;
        let embedder: Arc<dyn Embed> = match config.embed.kind {
            crate::config::EmbedKind::Onnx => Arc::new(load_embedder(config)?),
            crate::config::EmbedKind::Hash => Arc::new(HashEmbedder::new(HASH_EMBED_DIM)),
        };
        Self::with_embedder(config, data, embedder)
    }

    /// Opens the store in a locked data dir with a given embedder.
    pub fn with_embedder(config: &Config, data: DataDir, embedder: Arc<dyn Embed>) -> anyhow::Result<Self> {
        let store: Arc<dyn VectorStore> = match config.store.kind {
            StoreKind::Edge => Arc::new(EdgeStore::open(&data.edge_store(), embedder.dim())?),
            StoreKind::Qdrant => Arc::new(QdrantStore::new(config.store.qdrant_settings(), embedder.dim())?),
        };
        let chunker = Chunker::new(ChunkerConfig {
            max_chars: config.index.chunk_max_chars,
            merge_chars: config.index.chunk_merge_chars,
            container_chars: config.index.chunk_container_chars,
            ..ChunkerConfig::default()
        });
        Ok(Self {
            data,
            embedder,
            store,
            chunker: Arc::new(chunker),
        })
    }

    /// The repo indexer over this engine's store, with the config's limits.
    pub fn repo_indexer(&self, config: &Config) -> RepoIndexer {
        let mut options = IndexOptions::new("");
        options.limits = FileLimits {
            max_file_bytes: config.index.max_file_bytes,
        };
        options.group_size = config.index.group_size;
        options.redact_secrets = config.index.redact_secrets;
        RepoIndexer {
            root: self.data.root().to_path_buf(),
            registry: self.data.registry(),
            chunker: self.chunker.clone(),
            embedder: self.embedder.clone(),
            store: self.store.clone(),
            options,
        }
    }

    /// Brings repository `repo` up to date with `path` (incrementally: only
    /// what changed since its last checkpoint) and records it in the registry.
    pub async fn index(
        &self,
        path: &Path,
        repo: &str,
        config: &Config,
        progress: &dyn RunProgress,
    ) -> anyhow::Result<IndexReport> {
        Ok(self.index_run(path, repo, config, progress).await?.index)
    }

    /// [`Engine::index`] with the whole run report (chunks embedded and
    /// reused, files changed, whether it rebuilt).
    pub async fn index_run(
        &self,
        path: &Path,
        repo: &str,
        config: &Config,
        progress: &dyn RunProgress,
    ) -> anyhow::Result<RunReport> {
        validate_repo_name(repo)?;
        let spec = RepoSpec {
            name: repo.to_string(),
            url: path.display().to_string(),
            ..Default::default()
        };
        Ok(self.repo_indexer(config).run(&spec, false, progress).await?)
    }

    /// Sets the groups that may read `repo` (besides `admin`).
    pub fn set_groups(&self, repo: &str, groups: Vec<String>) -> anyhow::Result<()> {
        let mut found = false;
        self.data.registry().update(repo, |record| {
            let mut record = record?;
            found = true;
            record.groups = groups;
            Some(record)
        })?;
        anyhow::ensure!(found, "unknown repo {repo:?}");
        Ok(())
    }

    /// Sets the sensitivity of `repo` (answers route on it).
    pub fn set_sensitivity(&self, repo: &str, sensitivity: crate::config::Sensitivity) -> anyhow::Result<()> {
        let mut found = false;
        self.data.registry().update(repo, |record| {
            let mut record = record?;
            found = true;
            record.sensitivity = sensitivity.as_str().to_string();
            Some(record)
        })?;
        anyhow::ensure!(found, "unknown repo {repo:?}");
        Ok(())
    }

    /// Shared state for the transports.
    pub fn state(&self, config: &Config) -> AppState {
        AppState::with_answers(
            self.embedder.clone(),
            self.store.clone(),
            self.data.registry(),
            config.search,
            &config.answer,
            &config.backends,
        )
    }
}

/// Repository names: 1–128 characters of `A-Z a-z 0-9 . _ - /`, not starting
/// with `.` or `/`.
pub fn validate_repo_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(['.', '/'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    anyhow::ensure!(
        ok,
        "invalid repo name {name:?}: use 1-128 characters of letters, digits, '.', '_', '-' and '/'"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names() {
        for ok in ["acme-auth", "acme/auth", "a.b_c"] {
            assert!(validate_repo_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "/abs", "has space", "x".repeat(129).as_str()] {
            assert!(validate_repo_name(bad).is_err(), "{bad}");
        }
    }
}
