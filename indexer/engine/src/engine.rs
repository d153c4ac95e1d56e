//! [`Engine`]: the data dir opened for indexing and serving: the model, the
//! store and the serving generation, shared by the binary, the eval and the
//! benches.

use std::path::Path;
use std::sync::Arc;

use cairn_indexer::chunk::{Chunker, ChunkerConfig};
use cairn_indexer::datadir::DataDir;
use cairn_indexer::embed::{Embed, EmbedderConfig, HashEmbedder, OnnxEmbedder, UnavailableEmbedder};
use cairn_indexer::generation::{self, Generation};
use cairn_indexer::pipeline::{IndexOptions, IndexReport};
use cairn_indexer::registry::Registry;
use cairn_indexer::repo::{RepoIndexer, RepoSpec, RunProgress, RunReport, chunking_signature};
use cairn_indexer::source::FileLimits;
use cairn_indexer::store::VectorStore;
use cairn_indexer::store::edge::EdgeStore;
use cairn_indexer::store::qdrant::QdrantStore;

use cairn_config::Config;
use cairn_config::store::StoreKind;
use cairn_indexer::serving::Serving;

/// An open index: the locked data dir, the embedder and the store.
///
/// `store` and `embedder` are the serving generation's (see
/// [`cairn_indexer::generation`]). When the configured model differs from
/// the one that built them, `migration` holds the new generation being
/// built: runs go there, searches stay on the serving pair until the switch.
///
/// Fields drop in order: the stores flush before the data dir's lock is
/// released, so no other process can open the directory mid-flush.
pub struct Engine {
    pub store: Arc<dyn VectorStore>,
    pub embedder: Arc<dyn Embed>,
    pub chunker: Arc<Chunker>,
    /// What searches use; the daemon replaces it at a switch.
    pub serving: Serving,
    /// The serving generation.
    pub generation: Generation,
    pub migration: Option<Migration>,
    pub data: DataDir,
}

/// A generation being built because the configured model changed.
pub struct Migration {
    pub to: Generation,
    /// The configured model.
    pub embedder: Arc<dyn Embed>,
    /// The new generation's store.
    pub store: Arc<dyn VectorStore>,
}

/// Dimension of the test embedder (`[embed] kind = "hash"`) by default.
pub use cairn_config::HASH_EMBED_DIM;

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

/// The embedder `[embed]` configures.
pub fn make_embedder(config: &Config) -> anyhow::Result<Arc<dyn Embed>> {
    Ok(match config.embed.kind {
        cairn_config::EmbedKind::Onnx => Arc::new(load_embedder(config)?),
        cairn_config::EmbedKind::Hash => Arc::new(HashEmbedder::new(config.embed.hash_dim)),
    })
}

/// The `[embed]` section as a generation records it: paths resolved, so the
/// model can be found again from any working directory.
fn embed_record(config: &Config) -> serde_json::Value {
    let mut embed = config.embed.clone();
    embed.runtime_library = config.runtime_library();
    embed.model_dir = config.model_dir();
    serde_json::to_value(&embed).unwrap_or_default()
}

/// The model that built `generation`, to embed queries for its store while
/// a successor is built; an embedder that answers "unavailable" when that
/// model cannot be loaded any more (or is not the same model).
fn previous_embedder(config: &Config, generation: &Generation) -> Arc<dyn Embed> {
    let unavailable = |why: String| -> Arc<dyn Embed> {
        tracing::warn!(
            reason = %why,
            "the previous embedding model cannot be loaded: search is unavailable until the new generation is built"
        );
        Arc::new(UnavailableEmbedder {
            dim: generation.dim,
            fingerprint: generation.fingerprint.clone(),
            reason: "the index is being rebuilt for a new embedding model, and the previous model is not \
                     available to answer meanwhile; search is back when the rebuild completes"
                .into(),
        })
    };
    let embed: cairn_config::EmbedConfig = match serde_json::from_value(generation.embed.clone()) {
        Ok(e) => e,
        Err(e) => return unavailable(format!("its settings were not recorded: {e}")),
    };
    let old = Config {
        embed,
        ..config.clone()
    };
    match make_embedder(&old) {
        Ok(e) if e.fingerprint() == generation.fingerprint && e.dim() == generation.dim => e,
        Ok(e) => unavailable(format!(
            "{} now holds another model ({})",
            old.model_dir().display(),
            e.fingerprint()
        )),
        Err(e) => unavailable(format!("{e:#}")),
    }
}

/// Opens the store of generation `name` for vectors of `dim`.
fn open_store(config: &Config, data: &DataDir, name: &str, dim: usize) -> anyhow::Result<Arc<dyn VectorStore>> {
    Ok(match config.store.kind {
        StoreKind::Edge => Arc::new(EdgeStore::open(&data.edge_shard(name), dim)?),
        StoreKind::Qdrant => {
            let mut settings = config.store.qdrant_settings();
            if name != generation::LEGACY {
                settings.collection = format!("{}-{name}", settings.collection);
            }
            Arc::new(QdrantStore::new(settings, dim)?)
        }
    })
}

/// How long the Qdrant collection of a replaced generation is kept after a
/// switch: retrieval replicas follow the published generation within
/// seconds ([`crate::roles::MIRROR_EVERY`]), and requests already under way
/// finish on the old one.
pub const RETIRE_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Drops the Qdrant collections of this deployment's generations other than
/// `serving` and `building` (replaced by a switch, or builds abandoned when
/// the model changed again); returns their names. The embedded store's
/// shards are removed when it is opened, so this is a no-op for it. Only
/// the process that writes the index (the daemon) calls it.
pub async fn drop_replaced_collections(
    store: &cairn_config::store::StoreConfig,
    serving: &str,
    building: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    if store.kind != StoreKind::Qdrant {
        return Ok(Vec::new());
    }
    let settings = store.qdrant_settings();
    let existing = cairn_indexer::store::qdrant::collections(&settings).await?;
    let replaced = generation::replaced_collections(&settings.collection, &existing, serving, building);
    for name in &replaced {
        let mut of = settings.clone();
        of.collection = name.clone();
        QdrantStore::new(of, 1)?.drop_collection().await?;
        tracing::info!(collection = %name, "dropped the collection of a replaced generation");
    }
    Ok(replaced)
}

impl Engine {
    /// Locks the data dir (failing at once if another process holds it),
    /// then loads the model and opens the store.
    pub fn open(config: &Config, holder: &str) -> anyhow::Result<Self> {
        let data = DataDir::open(&config.data_dir, holder)?;
        let embedder = make_embedder(config)?;
        Self::with_embedder(config, data, embedder)
    }

    /// Opens the stores in a locked data dir with a given embedder: the
    /// serving generation's, and a new one when the embedder is not the
    /// model that built it.
    pub fn with_embedder(config: &Config, data: DataDir, embedder: Arc<dyn Embed>) -> anyhow::Result<Self> {
        let root = data.root().to_path_buf();
        generation::finish(&root)?;
        let chunker = Arc::new(Chunker::new(ChunkerConfig {
            max_chars: config.index.chunk_max_chars,
            merge_chars: config.index.chunk_merge_chars,
            container_chars: config.index.chunk_container_chars,
            ..ChunkerConfig::default()
        }));
        let wanted = Generation::for_model(
            embedder.fingerprint(),
            &chunking_signature(&chunker),
            embedder.dim(),
            embed_record(config),
        );
        let serving_gen = match generation::load(&root)? {
            Some(g) => g,
            None => {
                // a new data dir, or one from before generations: its store
                // keeps the legacy name (and a model change there rebuilds in place)
                let first = Generation {
                    name: generation::LEGACY.to_string(),
                    ..wanted.clone()
                };
                generation::save(&root, &first)?;
                first
            }
        };
        let (store, serving_embedder, migration) = if serving_gen.same_index(&wanted) {
            let store = open_store(config, &data, &serving_gen.name, embedder.dim())?;
            (store, embedder, None)
        } else {
            tracing::warn!(
                from_model = %serving_gen.fingerprint,
                to_model = %wanted.fingerprint,
                from_chunking = %serving_gen.chunking,
                to_chunking = %wanted.chunking,
                generation = %wanted.name,
                "the embedding model or the chunking changed: building a new generation of the index; \
                 search answers from the previous one until it is complete"
            );
            let old_store = open_store(config, &data, &serving_gen.name, serving_gen.dim)?;
            let old_embedder = if serving_gen.fingerprint == wanted.fingerprint && serving_gen.dim == wanted.dim {
                // only the chunking changed: the same model embeds queries for both
                embedder.clone()
            } else {
                previous_embedder(config, &serving_gen)
            };
            let new_store = open_store(config, &data, &wanted.name, wanted.dim)?;
            let migration = Migration {
                to: wanted,
                embedder,
                store: new_store,
            };
            (old_store, old_embedder, Some(migration))
        };
        if config.store.kind == StoreKind::Edge {
            let building = migration.as_ref().map(|m| m.to.name.as_str());
            for name in generation::remove_stale_shards(&root, &serving_gen.name, building)? {
                tracing::info!(generation = %name, "removed the store of a replaced generation");
            }
        }
        Ok(Self {
            serving: Serving::new(serving_embedder.clone(), store.clone()),
            data,
            embedder: serving_embedder,
            store,
            chunker,
            generation: serving_gen,
            migration,
        })
    }

    fn indexer_over(
        &self,
        config: &Config,
        registry: Registry,
        embedder: Arc<dyn Embed>,
        store: Arc<dyn VectorStore>,
    ) -> RepoIndexer {
        let mut options = IndexOptions::new("");
        options.limits = FileLimits {
            max_file_bytes: config.index.max_file_bytes,
        };
        options.group_size = config.index.group_size;
        options.redact_secrets = config.index.redact_secrets;
        options.secret_rules_file = config.secrets.rules_file().map(Path::to_path_buf);
        RepoIndexer {
            root: self.data.root().to_path_buf(),
            registry,
            chunker: self.chunker.clone(),
            embedder,
            store,
            options,
        }
    }

    /// The indexer of the serving generation.
    pub fn serving_indexer(&self, config: &Config) -> RepoIndexer {
        self.indexer_over(config, self.data.registry(), self.embedder.clone(), self.store.clone())
    }

    /// The indexer of the generation being built, with its own checkpoints.
    pub fn building_indexer(&self, config: &Config) -> Option<RepoIndexer> {
        self.migration.as_ref().map(|m| {
            self.indexer_over(
                config,
                generation::build_registry(self.data.root(), &m.to.name),
                m.embedder.clone(),
                m.store.clone(),
            )
        })
    }

    /// The indexer a generation being built uses once it serves (its store
    /// and model, the data dir's registry).
    pub fn switched_indexer(&self, config: &Config) -> Option<RepoIndexer> {
        self.migration
            .as_ref()
            .map(|m| self.indexer_over(config, self.data.registry(), m.embedder.clone(), m.store.clone()))
    }

    /// Builds every repo of the serving generation into the new one (from
    /// the local path it was indexed from) and switches over. Repos whose
    /// source is gone are dropped, with a warning. No-op without a migration.
    pub async fn finish_migration(&mut self, config: &Config) -> anyhow::Result<()> {
        let Some(building) = self.building_indexer(config) else {
            return Ok(());
        };
        let main = self.data.registry();
        for (name, record) in main.load()? {
            if record.source.contains("://") || !Path::new(&record.source).exists() {
                continue;
            }
            let spec = RepoSpec {
                name: name.clone(),
                url: record.source.clone(),
                ..Default::default()
            };
            eprintln!("rebuilding {name} for the new embedding model");
            building.run(&spec, false, &cairn_indexer::pipeline::NoProgress).await?;
        }
        let migration = self.migration.take().expect("checked above");
        let dropped = generation::switch(self.data.root(), &main, &migration.to)?;
        for name in &dropped {
            tracing::warn!(repo = %name, "dropped at the model switch: its source is gone, so it could not be rebuilt");
        }
        self.serving
            .replace(migration.embedder.clone(), migration.store.clone());
        self.embedder = migration.embedder;
        self.store = migration.store;
        self.generation = migration.to;
        Ok(())
    }

    /// Answers searches from generation `to` from now on: a retrieval
    /// replica following the switch its indexer published. The configured
    /// model embeds queries when `to` was built with it; otherwise the model
    /// recorded in `to` (or 503 until it can be loaded).
    pub fn follow(&self, config: &Config, to: &Generation) -> anyhow::Result<()> {
        let store = open_store(config, &self.data, &to.name, to.dim)?;
        let embedder = if to.fingerprint == self.embedder.fingerprint() && to.dim == self.embedder.dim() {
            self.embedder.clone()
        } else {
            previous_embedder(config, to)
        };
        self.serving.replace(embedder, store);
        tracing::info!(generation = %to.name, model = %to.fingerprint, "searches follow the published generation");
        Ok(())
    }

    /// The indexer runs use: the generation being built when there is one,
    /// else the serving one.
    pub fn repo_indexer(&self, config: &Config) -> RepoIndexer {
        self.building_indexer(config)
            .unwrap_or_else(|| self.serving_indexer(config))
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

    /// Purges `repo` from the serving generation and from one being built.
    pub async fn remove(&self, repo: &str, config: &Config) -> anyhow::Result<()> {
        if let Some(building) = self.building_indexer(config) {
            building.remove(repo).await?;
        }
        self.serving_indexer(config).remove(repo).await?;
        Ok(())
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
    pub fn set_sensitivity(&self, repo: &str, sensitivity: cairn_config::Sensitivity) -> anyhow::Result<()> {
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
}

pub use cairn_config::validate_repo_name;

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

    fn hash_config(data: &Path, dim: usize) -> Config {
        let mut config = Config {
            data_dir: data.to_path_buf(),
            ..Config::default()
        };
        config.embed.kind = cairn_config::EmbedKind::Hash;
        config.embed.hash_dim = dim;
        config
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn cairn_index_after_a_model_change_rebuilds_everything_then_switches() {
        use cairn_indexer::pipeline::NoProgress;
        let data = tempfile::tempdir().unwrap();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(a.path().join("a.py"), "def alpha():\n    return 1\n").unwrap();
        std::fs::write(b.path().join("b.py"), "def beta():\n    return 2\n").unwrap();
        let old = hash_config(data.path(), 16);
        {
            let engine = Engine::open(&old, "test").unwrap();
            engine.index(a.path(), "a", &old, &NoProgress).await.unwrap();
            engine.index(b.path(), "b", &old, &NoProgress).await.unwrap();
        }
        // an unchanged model reopens the same generation
        assert!(Engine::open(&old, "test").unwrap().migration.is_none());

        let new = hash_config(data.path(), 24);
        let mut engine = Engine::open(&new, "test").unwrap();
        assert_eq!(engine.store.dim(), 16, "the serving store is still the old one");
        engine.finish_migration(&new).await.unwrap();
        assert!(engine.migration.is_none());
        assert_eq!(
            (engine.store.dim(), engine.embedder.dim(), engine.serving.get().1.dim()),
            (24, 24, 24)
        );
        let records = engine.data.registry().load().unwrap();
        assert_eq!(records.len(), 2);
        assert!(
            records.values().all(|r| r.embedder == "hash-24" && r.chunks > 0),
            "{records:?}"
        );
        let n = engine
            .store
            .count(&cairn_indexer::store::SearchFilter::default())
            .await
            .unwrap();
        assert_eq!(n, records.values().map(|r| r.chunks).sum::<usize>());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_chunking_change_builds_a_new_generation_with_the_same_model() {
        use cairn_indexer::pipeline::NoProgress;
        let data = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let body: String = (0..40).map(|i| format!("def f{i}():\n    return {i}\n\n")).collect();
        std::fs::write(src.path().join("m.py"), body).unwrap();
        let mut config = hash_config(data.path(), 16);
        let before = {
            let engine = Engine::open(&config, "test").unwrap();
            engine
                .index(src.path(), "m", &config, &NoProgress)
                .await
                .unwrap()
                .chunks
        };
        config.index.chunk_max_chars /= 4;
        config.index.chunk_merge_chars /= 4;
        let mut engine = Engine::open(&config, "test").unwrap();
        let to = engine
            .migration
            .as_ref()
            .expect("new chunking, new generation")
            .to
            .clone();
        assert_eq!(to.fingerprint, engine.generation.fingerprint, "same model");
        assert_ne!(to.chunking, engine.generation.chunking);
        // the old store still answers, with the same model (not "unavailable")
        assert!(engine.serving.get().0.embed_query("f3").is_ok());
        engine.finish_migration(&config).await.unwrap();
        let record = &engine.data.registry().load().unwrap()["m"];
        assert_eq!(
            (record.chunks, record.files),
            (before, 1),
            "every function is its own chunk either way"
        );
        let n = engine
            .store
            .count(&cairn_indexer::store::SearchFilter::default())
            .await
            .unwrap();
        assert_eq!(n, before);
        assert_eq!(generation::load(data.path()).unwrap().unwrap().name, to.name);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn search_is_unavailable_not_wrong_when_the_old_model_is_gone() {
        let data = tempfile::tempdir().unwrap();
        let generation = Generation {
            name: generation::LEGACY.into(),
            fingerprint: "some-model-that-was-deleted".into(),
            dim: 8,
            chunking: String::new(),
            embed: serde_json::json!({"kind": "onnx", "model_dir": data.path().join("no-such-model")}),
        };
        let config = hash_config(data.path(), 8);
        let e = previous_embedder(&config, &generation);
        assert_eq!(e.dim(), 8);
        let err = e.embed_query("anything").unwrap_err();
        assert_eq!(err.kind(), cairn_indexer::error::ErrorKind::Unavailable);
        assert!(
            err.to_string().contains("being rebuilt for a new embedding model"),
            "{err}"
        );

        // settings that load a different model than the one recorded: unavailable too
        let mismatched = Generation {
            embed: serde_json::to_value(&config.embed).unwrap(),
            ..generation
        };
        assert!(previous_embedder(&config, &mismatched).embed_query("x").is_err());
    }
}
