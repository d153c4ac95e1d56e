//! Repositories the indexer follows, and one indexing run of one of them.
//!
//! This is the seam between the index (sync, diff, chunk, embed, store,
//! checkpoint) and whoever decides *when* a repo is indexed (the CLI, the
//! daemon's scheduler, reindex calls and webhooks in `services`).
//!
//! [`RepoIndexer::run`] brings one repo up to date with its source and moves
//! its checkpoint (the registry record) only after the store acknowledged
//! every write; [`RepoIndexer::remove`] purges a repo.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cairn_chunk::{CHUNKER_VERSION, Chunker};
use serde::{Deserialize, Serialize};

use crate::cache::{EmbeddingCache, write_atomic};
use crate::embed::Embed;
use crate::error::{IndexError, Result};
use crate::pipeline::{EMBED_TEXT_VERSION, FileRead, IndexOptions, IndexReport, Progress, write_files};
use crate::registry::{Registry, RepoRecord};
use crate::source::{self, FileLimits, SkipCounts, SkipReason, SourceFile};
use crate::store::{SearchFilter, VectorStore};
use crate::sync::{self, Resolved};

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
    /// Who may read it, when the caller decides (the daemon's `[[repos]]`):
    /// written into the registry record together with the checkpoint, so a
    /// new repo is never visible with the wrong groups. `None`: keep the
    /// record's groups and sensitivity (empty for a new repo: admins only).
    pub access: Option<RepoAccess>,
}

/// The readers and sensitivity a run writes into the repo's record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepoAccess {
    /// Groups whose members may read it (besides `admin`).
    pub groups: Vec<String>,
    /// `public | internal | confidential | restricted`; `None`: keep the
    /// record's.
    pub sensitivity: Option<String>,
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
    /// The pipeline's report: files and chunks of the whole repo after the
    /// run, tokens embedded and secrets redacted in this run.
    pub index: IndexReport,
    /// Chunks whose vectors were computed in this run (not taken from the cache).
    pub chunks_embedded: usize,
    /// Chunks written in this run whose vectors were not computed: from the
    /// embedding cache (identical text embedded before, in any repo or
    /// branch) or from the point already stored for the same chunk.
    pub chunks_reused: usize,
    /// Files added, changed or removed since the previous checkpoint.
    pub files_changed: usize,
    /// Whether the run rebuilt the repo from nothing.
    pub full: bool,
}

/// Indexes repos into one store and keeps their checkpoints in the registry.
///
/// # How a run stays correct
/// Besides the registry record (the checkpoint), each repo has a state file,
/// `<root>/state/<escaped name>.json`: the manifest of what the store holds
/// (path → blob id, mode and outcome), the settings it was built with, and
/// the paths a run is about to touch. A run
///
/// 1. resolves the source (fetching remotes into their mirror) and lists the
///    new tree (path → blob id, mode), filtered by the include/exclude globs;
/// 2. diffs it against the manifest: paths whose blob or mode differ, that
///    appeared or disappeared, plus paths a crashed run left pending — all
///    paths when `full`, without a state, or when the settings changed;
/// 3. records those paths as pending (durably) before touching the store;
/// 4. writes the points of the added/changed files, deletes the other
///    points of the touched paths, and moves the `commit` payload of every
///    other point of the repo to the new commit ([`VectorStore::set_commit`]),
///    then flushes;
/// 5. only then writes the new manifest and the registry record.
///
/// Diffing against the manifest rather than against the old commit's tree
/// needs no old objects, so force-pushes and rewritten or garbage-collected
/// history converge without a full rebuild. Point ids do not contain the
/// commit, so after any run the store holds exactly the ids and payloads a
/// clean build of the same commit holds. One run per repo at a time.
#[derive(Clone)]
pub struct RepoIndexer {
    /// The data directory (mirrors and caches live below it).
    pub root: PathBuf,
    /// The checkpoints; the manifests live beside it, in `state/` (the
    /// data dir's, or a generation's build directory).
    pub registry: Registry,
    pub chunker: Arc<Chunker>,
    pub embedder: Arc<dyn Embed>,
    pub store: Arc<dyn VectorStore>,
    /// Limits, group size and secret redaction (its `repo` is ignored).
    pub options: IndexOptions,
}

/// What the manifest knows of one path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FileState {
    /// Git blob id (blake3 of the content for plain directories).
    blob: String,
    /// Git file mode.
    mode: u32,
    /// `None`: indexed; else why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    skipped: Option<SkipReason>,
}

/// The durable state of one repo (see [`RepoIndexer`]).
#[derive(Debug, Default, Serialize, Deserialize)]
struct RepoState {
    /// What the points were built with besides the content.
    settings: String,
    /// The commit the manifest describes (empty for plain directories).
    commit: String,
    /// What the store holds, by path.
    files: BTreeMap<String, FileState>,
    /// Paths a run started touching and did not finish.
    #[serde(default)]
    pending: BTreeSet<String>,
    /// A full rebuild started and did not finish.
    #[serde(default)]
    pending_full: bool,
}

const MODE_LINK: u32 = 0o120000;
const MODE_SUBMODULE: u32 = 0o160000;
const MODE_FILE: u32 = 0o100644;

/// One path of the tree being indexed.
#[derive(Clone)]
struct Entry {
    blob: String,
    mode: u32,
}

/// Include/exclude globs of a spec.
struct Scope {
    include: Option<globset::GlobSet>,
    exclude: globset::GlobSet,
}

impl Scope {
    fn new(spec: &RepoSpec) -> Result<Self> {
        let build = |globs: &[String]| -> Result<globset::GlobSet> {
            let mut b = globset::GlobSetBuilder::new();
            let mut errors = Vec::new();
            for g in globs {
                match globset::GlobBuilder::new(g).literal_separator(true).build() {
                    Ok(g) => {
                        b.add(g);
                    }
                    Err(e) => errors.push(format!("{g:?}: {e}")),
                }
            }
            if !errors.is_empty() {
                return Err(IndexError::InvalidArgument(format!(
                    "repo {}: invalid globs: {}",
                    spec.name,
                    errors.join("; ")
                )));
            }
            b.build()
                .map_err(|e| IndexError::InvalidArgument(format!("repo {}: {e}", spec.name)))
        };
        Ok(Self {
            include: (!spec.include.is_empty()).then(|| build(&spec.include)).transpose()?,
            exclude: build(&spec.exclude)?,
        })
    }

    fn accepts(&self, path: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(path)) && !self.exclude.is_match(path)
    }
}

/// The chunker version, the model-text version and the chunker settings:
/// what decides how files are cut into chunks and what text is embedded.
pub fn chunking_signature(chunker: &Chunker) -> String {
    let c = chunker.config();
    format!(
        "{CHUNKER_VERSION}.{EMBED_TEXT_VERSION}:{}:{}:{}:{}:{}",
        c.max_chars, c.merge_chars, c.container_chars, c.window_lines, c.window_overlap,
    )
}

fn state_path(root: &Path, name: &str) -> PathBuf {
    root.join("state").join(format!("{}.json", sync::escape(name)))
}

fn load_state(path: &Path) -> Result<Option<RepoState>> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable repo state: rebuilding the repo");
                Ok(None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(IndexError::io(format!("failed to read {}", path.display()), e)),
    }
}

fn save_state(path: &Path, state: &RepoState) -> Result<()> {
    let bytes = serde_json::to_vec(state).map_err(|e| IndexError::Internal(e.to_string()))?;
    write_atomic(path, &bytes)
}

fn blocking_err(e: tokio::task::JoinError) -> IndexError {
    IndexError::Internal(format!("a blocking indexing task failed: {e}"))
}

/// Lists the tree of `commit` in `repo`: path → (blob, mode), in scope only.
fn git_entries(repo_path: &Path, commit: &str, scope: &Scope) -> Result<BTreeMap<String, Entry>> {
    let err = |e: git2::Error| IndexError::Source {
        path: repo_path.to_path_buf(),
        message: e.message().to_string(),
    };
    let repo = git2::Repository::open(repo_path).map_err(err)?;
    let oid = git2::Oid::from_str(commit).map_err(err)?;
    let tree = repo.find_commit(oid).and_then(|c| c.tree()).map_err(err)?;
    let mut out = BTreeMap::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(git2::ObjectType::Tree) {
            return git2::TreeWalkResult::Ok;
        }
        let Some(name) = entry.name() else {
            tracing::warn!(dir, "skipping a path that is not UTF-8");
            return git2::TreeWalkResult::Ok;
        };
        let path = format!("{dir}{name}");
        if scope.accepts(&path) {
            out.insert(
                path,
                Entry {
                    blob: entry.id().to_string(),
                    mode: entry.filemode() as u32,
                },
            );
        }
        git2::TreeWalkResult::Ok
    })
    .map_err(err)?;
    Ok(out)
}

/// Lists a plain directory like [`source::read_dir`] does: path → (blake3
/// of the content, mode), in scope only. Unreadable files get an empty
/// blob; a file over `max_bytes` is never read: its blob is `oversized:`
/// and its size (it is skipped whatever its content, and indexed again once
/// its size changes).
fn dir_entries(root: &Path, scope: &Scope, max_bytes: usize) -> Result<BTreeMap<String, Entry>> {
    let root_real = std::fs::canonicalize(root).map_err(|e| IndexError::Source {
        path: root.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    let walker = ignore::WalkBuilder::new(root)
        .follow_links(false)
        .require_git(false)
        .hidden(true)
        .build();
    for entry in walker.flatten() {
        let Some(ft) = entry.file_type() else { continue };
        if !ft.is_file() && !ft.is_symlink() {
            continue;
        }
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let Some(rel) = rel
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect::<Option<Vec<_>>>()
            .map(|c| c.join("/"))
        else {
            tracing::warn!(path = %entry.path().display(), "skipping a path that is not UTF-8");
            continue;
        };
        if !scope.accepts(&rel) {
            continue;
        }
        let (blob, mode) = if ft.is_symlink() {
            (String::new(), MODE_LINK)
        } else {
            let blob = match source::read_within(&root_real, entry.path(), max_bytes) {
                Ok(bytes) => blake3::hash(&bytes).to_hex().to_string(),
                Err(source::Refused::Oversized(size)) => format!("oversized:{size}"),
                Err(source::Refused::Outside) => {
                    out.insert(
                        rel,
                        Entry {
                            blob: String::new(),
                            mode: MODE_LINK,
                        },
                    );
                    continue;
                }
                Err(_) => String::new(),
            };
            (blob, MODE_FILE)
        };
        out.insert(rel, Entry { blob, mode });
    }
    Ok(out)
}

/// The touched paths that still exist, read one at a time as the pipeline
/// pulls them ([`write_files`]): never more than one file's bytes at once.
/// The manifest entry of every path it yields is added to `states`.
struct TouchedFiles {
    repo: Option<git2::Repository>,
    /// The canonical root of a plain directory.
    dir: Option<PathBuf>,
    paths: std::vec::IntoIter<(String, Entry)>,
    limits: FileLimits,
    states: Arc<parking_lot::Mutex<BTreeMap<String, FileState>>>,
}

impl TouchedFiles {
    fn new(
        resolved: &Resolved,
        entries: &BTreeMap<String, Entry>,
        touched: &BTreeSet<String>,
        limits: &FileLimits,
    ) -> Result<Self> {
        let (repo, dir) = match resolved {
            Resolved::Git { repo, .. } => (
                Some(git2::Repository::open(repo).map_err(|e| IndexError::Source {
                    path: repo.clone(),
                    message: e.message().to_string(),
                })?),
                None,
            ),
            Resolved::Dir(root) => (
                None,
                Some(std::fs::canonicalize(root).map_err(|e| IndexError::Source {
                    path: root.clone(),
                    message: e.to_string(),
                })?),
            ),
        };
        let paths: Vec<(String, Entry)> = touched
            .iter()
            .filter_map(|p| entries.get(p).map(|e| (p.clone(), e.clone())))
            .collect();
        Ok(Self {
            repo,
            dir,
            paths: paths.into_iter(),
            limits: limits.clone(),
            states: Arc::default(),
        })
    }

    /// Files it will yield.
    fn len(&self) -> usize {
        self.paths.len()
    }

    /// The bytes of one entry, or why it is skipped.
    fn bytes(&self, path: &str, entry: &Entry) -> std::result::Result<Vec<u8>, SkipReason> {
        match entry.mode {
            MODE_LINK => return Err(SkipReason::Symlink),
            MODE_SUBMODULE => return Err(SkipReason::Submodule),
            _ => {}
        }
        if let Some(repo) = &self.repo {
            let oid = git2::Oid::from_str(&entry.blob).map_err(|_| SkipReason::Unreadable)?;
            // Size first: a huge blob is never loaded.
            let (size, _) = repo
                .odb()
                .and_then(|odb| odb.read_header(oid))
                .map_err(|_| SkipReason::Unreadable)?;
            if size > self.limits.max_file_bytes {
                return Err(SkipReason::Oversized);
            }
            return repo
                .find_blob(oid)
                .map(|b| b.content().to_vec())
                .map_err(|_| SkipReason::Unreadable);
        }
        match &self.dir {
            Some(root) => source::read_within(root, &root.join(path), self.limits.max_file_bytes)
                .map_err(|refused| refused.skip_reason()),
            None => Err(SkipReason::Unreadable),
        }
    }
}

impl Iterator for TouchedFiles {
    type Item = FileRead;

    fn next(&mut self) -> Option<FileRead> {
        let (path, entry) = self.paths.next()?;
        let mut state = FileState {
            blob: entry.blob.clone(),
            mode: entry.mode,
            skipped: None,
        };
        let text = self.bytes(&path, &entry).and_then(|bytes| {
            if self.dir.is_some() {
                // What was read is what gets indexed: its hash is the blob.
                state.blob = blake3::hash(&bytes).to_hex().to_string();
            }
            source::classify(&path, &bytes, &self.limits)
        });
        let item = match text {
            Ok(text) => Ok(SourceFile {
                path: path.clone(),
                blob: state.blob.clone(),
                text,
            }),
            Err(reason) => {
                state.skipped = Some(reason);
                Err(reason)
            }
        };
        self.states.lock().insert(path, state);
        Some(item)
    }
}

impl RepoIndexer {
    /// Brings `spec` up to date: syncs its source, indexes what changed since
    /// the last checkpoint (everything when `full` or when there is none) and
    /// moves the checkpoint once the store acknowledged the writes.
    ///
    /// The registry record keeps the `groups` and `sensitivity` it had.
    pub async fn run(&self, spec: &RepoSpec, full: bool, progress: &dyn RunProgress) -> Result<RunReport> {
        let started = Instant::now();
        let scope = Scope::new(spec)?;
        progress.phase(Phase::Syncing);
        let (root, s) = (self.root.clone(), spec.clone());
        let resolved = tokio::task::spawn_blocking(move || sync::resolve(&root, &s))
            .await
            .map_err(blocking_err)??;
        progress.phase(Phase::Indexing);
        let (commit, source_dir) = match &resolved {
            Resolved::Git { repo, commit } => (commit.clone(), repo.clone()),
            Resolved::Dir(dir) => (String::new(), dir.clone()),
        };

        let (r, sc, max_bytes) = (resolved.clone(), scope, self.options.limits.max_file_bytes);
        let entries = tokio::task::spawn_blocking(move || match &r {
            Resolved::Git { repo, commit } => git_entries(repo, commit, &sc),
            Resolved::Dir(dir) => dir_entries(dir, &sc, max_bytes),
        })
        .await
        .map_err(blocking_err)??;

        let state_file = state_path(self.registry.dir(), &spec.name);
        let settings = self.settings(spec);
        let record = self.registry.load()?.remove(&spec.name);
        let previous = load_state(&state_file)?;
        let mut state = match previous {
            Some(st)
                if !full
                    && !st.pending_full
                    && st.settings == settings
                    && record
                        .as_ref()
                        .is_some_and(|r| r.embedder == self.embedder.fingerprint()) =>
            {
                st
            }
            Some(st) if !full && !st.pending_full => {
                tracing::info!(repo = %spec.name, "index settings or model changed: rebuilding the repo");
                RepoState {
                    pending_full: true,
                    ..Default::default()
                }
            }
            _ => RepoState {
                pending_full: true,
                ..Default::default()
            },
        };
        let full = state.pending_full;
        let mut touched: BTreeSet<String> = std::mem::take(&mut state.pending);
        if full {
            touched.extend(entries.keys().cloned());
        } else {
            for (path, e) in &entries {
                if state
                    .files
                    .get(path)
                    .is_none_or(|f| f.blob != e.blob || f.mode != e.mode)
                {
                    touched.insert(path.clone());
                }
            }
            touched.extend(state.files.keys().filter(|p| !entries.contains_key(*p)).cloned());
        }
        if !full
            && touched.is_empty()
            && state.commit == commit
            && record.as_ref().is_some_and(|r| r.indexed_commit == commit)
        {
            // Nothing changed: the checkpoint is already here.
            let record = record.unwrap_or_default();
            return Ok(RunReport {
                index: IndexReport {
                    repo: spec.name.clone(),
                    commit,
                    files: record.files,
                    chunks: record.chunks,
                    skipped: record.skipped,
                    redact_secrets: record.redact_secrets,
                    seconds: started.elapsed().as_secs_f64(),
                    ..Default::default()
                },
                ..Default::default()
            });
        }
        // Durably note what is about to change before the store changes.
        state.pending = touched.clone();
        state.settings = settings;
        save_state(&state_file, &state)?;

        // Files are read as the pipeline takes them, not all up front.
        let (r, t, l) = (resolved.clone(), touched.clone(), self.options.limits.clone());
        let (files, entries) =
            tokio::task::spawn_blocking(move || TouchedFiles::new(&r, &entries, &t, &l).map(|f| (f, entries)))
                .await
                .map_err(blocking_err)??;
        let (files_total, states) = (files.len(), files.states.clone());

        let mut options = self.options.clone();
        options.repo = spec.name.clone();
        let run = uuid::Uuid::new_v4().to_string();
        let cache = match EmbeddingCache::shared(&self.root) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "embedding cache unavailable: embedding everything");
                None
            }
        };
        let written = write_files(
            files,
            files_total,
            &commit,
            &run,
            &options,
            self.chunker.clone(),
            self.embedder.clone(),
            self.store.clone(),
            cache.clone(),
            progress,
        )
        .await?;
        if full {
            self.store.delete_stale(&spec.name, &run).await?;
        } else {
            let paths: Vec<String> = touched.iter().cloned().collect();
            self.store.delete_paths(&spec.name, &paths, &run).await?;
            if state.commit != commit {
                self.store.set_commit(&spec.name, &commit).await?;
            }
        }
        if full {
            self.store.optimize().await?;
        } else {
            self.store.flush().await?;
        }
        if let Some(cache) = &cache
            && let Err(e) = cache.sync()
        {
            tracing::warn!(error = %e, "failed to sync the embedding cache");
        }

        let states = std::mem::take(&mut *states.lock());
        if states.len() != files_total {
            // The pipeline stopped before the last file without saying why.
            return Err(IndexError::Internal(format!(
                "repo {}: {} of {files_total} files were indexed; the checkpoint stays",
                spec.name,
                states.len()
            )));
        }
        // The store holds the new tree: record it, then move the checkpoint.
        if full {
            state.files.clear();
        }
        for path in &touched {
            match states.get(path) {
                Some(s) => state.files.insert(path.clone(), s.clone()),
                None => state.files.remove(path),
            };
        }
        debug_assert_eq!(state.files.len(), entries.len());
        state.commit = commit.clone();
        state.pending.clear();
        state.pending_full = false;
        save_state(&state_file, &state)?;

        let mut skipped = SkipCounts::new();
        for f in state.files.values() {
            if let Some(reason) = f.skipped {
                *skipped.entry(reason).or_default() += 1;
            }
        }
        let files = state.files.values().filter(|f| f.skipped.is_none()).count();
        let chunks = self
            .store
            .count(&SearchFilter {
                repos: vec![spec.name.clone()],
                ..Default::default()
            })
            .await?;
        let report = IndexReport {
            repo: spec.name.clone(),
            commit: commit.clone(),
            files,
            chunks,
            tokens: written.tokens,
            skipped,
            secrets: written.secrets,
            redact_secrets: options.redact_secrets,
            seconds: started.elapsed().as_secs_f64(),
        };
        // groups and sensitivity are whatever they are now (they may have
        // changed during the run), read and written under the registry lock
        let mut fresh = RepoRecord {
            groups: Vec::new(),
            sensitivity: String::new(),
            name: spec.name.clone(),
            source: source_dir.display().to_string(),
            indexed_commit: commit,
            files: report.files,
            chunks: report.chunks,
            skipped: report.skipped.clone(),
            secrets_redacted: report.secrets.clone(),
            redact_secrets: report.redact_secrets,
            last_indexed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            embedder: self.embedder.fingerprint().to_string(),
        };
        self.registry.update(&spec.name, |current| {
            if let Some(current) = current {
                fresh.groups = current.groups;
                fresh.sensitivity = current.sensitivity;
            }
            if let Some(access) = &spec.access {
                fresh.groups = access.groups.clone();
                if let Some(s) = &access.sensitivity {
                    fresh.sensitivity = s.clone();
                }
            }
            Some(fresh)
        })?;
        tracing::info!(
            repo = %report.repo,
            commit = %report.commit,
            full,
            files_changed = touched.len(),
            files = report.files,
            chunks = report.chunks,
            chunks_embedded = written.embedded,
            chunks_reused = written.reused,
            tokens = report.tokens,
            took_s = report.seconds,
            "indexed"
        );
        Ok(RunReport {
            index: report,
            chunks_embedded: written.embedded,
            chunks_reused: written.reused,
            files_changed: touched.len(),
            full,
        })
    }

    /// What the points of `spec` depend on besides file content: a change
    /// rebuilds the repo.
    fn settings(&self, spec: &RepoSpec) -> String {
        format!(
            "v1|embedder={}|chunker={}|max_file_bytes={}|redact={}|include={:?}|exclude={:?}",
            self.embedder.fingerprint(),
            chunking_signature(&self.chunker),
            self.options.limits.max_file_bytes,
            self.options.redact_secrets,
            spec.include,
            spec.exclude,
        )
    }

    /// Purges `name`: its points, mirror, state and registry record.
    /// Removing a repo that is not indexed is not an error. (Embedding cache
    /// entries are keyed by content and shared by every repo, so they stay.)
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.store.delete_repo(name).await?;
        self.store.flush().await?;
        for (path, dir) in [
            (state_path(self.registry.dir(), name), false),
            (sync::mirror_path(&self.root, name), true),
        ] {
            let removed = match dir {
                true => std::fs::remove_dir_all(&path),
                false => std::fs::remove_file(&path),
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(IndexError::io(format!("failed to remove {}", path.display()), e)),
            }
        }
        self.registry.remove(name)?;
        Ok(())
    }
}
