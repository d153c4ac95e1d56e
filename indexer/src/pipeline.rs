//! The indexing pipeline: snapshot → chunk → embed → store.
//!
//! Stages run concurrently behind bounded channels, so memory stays flat and
//! the model (the bottleneck) never waits for parsing:
//!
//! ```text
//! [files, read lazily] ─► [chunk thread] ──(groups of chunks, cap 4)──► [embed thread] ──(points, cap 2)──► [async writer]
//! ```
//!
//! Files come as an iterator the chunk thread pulls from ([`write_files`]),
//! so a file is read only when the previous ones are chunked and the groups
//! ahead of it fit in the channels: at most about eight groups of
//! `group_size` chunks and one file (at most `max_file_bytes`) are in
//! memory at once, whatever the size of the repository.
//!
//! A panic in any stage fails the run with [`IndexError::Internal`]: a run
//! never reports success with chunks missing.
//!
//! Before a file is chunked its text is redacted ([`secrets::Scanner`], on
//! unless [`IndexOptions::redact_secrets`] is off), so stored content, the
//! text the model embeds and the BM25 terms never hold a secret value.
//!
//! Each group is sorted by text length before it is cut into model batches,
//! so a batch pads to similar lengths. Points get deterministic ids and the
//! run id; once every group is acknowledged, the repo's points from older
//! runs are deleted and the store is flushed.

use std::sync::Arc;
use std::time::Instant;

use cairn_chunk::{CHUNKER_VERSION, Chunker};
use serde::{Deserialize, Serialize};

use crate::cache::{EmbeddingCache, Key, key as cache_key};
use crate::embed::Embed;
use crate::error::{IndexError, Result};
use crate::secrets::{self, SecretCounts};
use crate::source::{FileLimits, SkipCounts, SkipReason, Snapshot, SourceFile};
use crate::sparse;
use crate::store::{ChunkPayload, ChunkPoint, VectorStore};

/// Options of one indexing run.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Repository name the points are filed under.
    pub repo: String,
    pub limits: FileLimits,
    /// Chunks per group: sorted by length, then embedded and written together.
    pub group_size: usize,
    /// Redact secrets from file text before chunking (default on).
    pub redact_secrets: bool,
    /// Extra secret rules in gitleaks' TOML format, added to the built-in
    /// ones (see [`secrets::Scanner::with_rules_file`]); `None` by default.
    pub secret_rules_file: Option<std::path::PathBuf>,
}

impl IndexOptions {
    pub fn new(repo: impl Into<String>) -> Self {
        Self {
            repo: repo.into(),
            limits: FileLimits::default(),
            group_size: 256,
            redact_secrets: true,
            secret_rules_file: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IndexReport {
    pub repo: String,
    pub commit: String,
    pub files: usize,
    pub chunks: usize,
    /// Model tokens embedded (padding excluded).
    pub tokens: usize,
    pub skipped: SkipCounts,
    /// Secrets redacted, by rule id (empty when none were found or
    /// redaction is off; see `redact_secrets`).
    #[serde(default)]
    pub secrets: SecretCounts,
    /// Whether secrets were redacted in this run.
    #[serde(default)]
    pub redact_secrets: bool,
    pub seconds: f64,
}

/// Receives progress; all methods have empty defaults.
pub trait Progress: Send + Sync {
    /// Files to chunk, known once the snapshot is read.
    fn start(&self, _files: usize) {}
    /// Files whose chunks are all stored, and chunks stored, so far.
    fn advance(&self, _files_done: usize, _chunks_done: usize) {}
}

/// A progress sink that ignores everything.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Version of how chunk text is prepared for the model (identifier
/// humanizing, BM25 fields); part of point ids, bumped when it changes.
pub const EMBED_TEXT_VERSION: u32 = 1;

/// Deterministic point id: the same chunk of the same blob, embedded by the
/// same model and chunker, always gets the same UUID.
pub fn point_id(repo: &str, path: &str, blob: &str, start: u32, end: u32, embedder: &str) -> String {
    point_id_of_part(repo, path, blob, start, end, embedder, 0)
}

/// [`point_id`] of the `part`-th chunk (from 0, in file order) of a file
/// that covers exactly lines `start..=end`: a line too long for one chunk
/// is cut into several with the same range, and each needs its own point.
/// Part 0 has the id [`point_id`] always gave, so ids of existing indexes
/// stay valid.
pub fn point_id_of_part(repo: &str, path: &str, blob: &str, start: u32, end: u32, embedder: &str, part: u32) -> String {
    let mut h = blake3::Hasher::new();
    let versions = format!("{CHUNKER_VERSION}.{EMBED_TEXT_VERSION}");
    for field in [
        repo,
        path,
        blob,
        &start.to_string(),
        &end.to_string(),
        embedder,
        &versions,
    ] {
        h.update(field.as_bytes());
        h.update(&[0]);
    }
    if part > 0 {
        h.update(part.to_string().as_bytes());
        h.update(&[0]);
    }
    let bytes: [u8; 16] = h.finalize().as_bytes()[..16].try_into().unwrap_or([0; 16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

struct Prepared {
    /// Its point's id.
    id: String,
    payload: ChunkPayload,
    embed_text: String,
}

/// Chunks of whole files, handed from the chunker to the embedder.
#[derive(Default)]
struct Group {
    chunks: Vec<Prepared>,
    files: usize,
}

/// Indexes a snapshot already read from a source: writes every file's
/// points, deletes the repo's points of older runs and flushes.
pub async fn index_snapshot(
    snapshot: Snapshot,
    options: &IndexOptions,
    chunker: Arc<Chunker>,
    embedder: Arc<dyn Embed>,
    store: Arc<dyn VectorStore>,
    progress: &dyn Progress,
) -> Result<IndexReport> {
    let started = Instant::now();
    let run = uuid::Uuid::new_v4().to_string();
    let mut report = IndexReport {
        repo: options.repo.clone(),
        commit: snapshot.commit.clone(),
        files: snapshot.files.len(),
        skipped: snapshot.skipped.clone(),
        redact_secrets: options.redact_secrets,
        ..Default::default()
    };
    let total = snapshot.files.len();
    let written = write_files(
        snapshot.files.into_iter().map(Ok),
        total,
        &snapshot.commit,
        &run,
        options,
        chunker,
        embedder,
        store.clone(),
        None,
        progress,
    )
    .await?;
    report.chunks = written.chunks;
    report.tokens = written.tokens;
    report.secrets = written.secrets;
    store.delete_stale(&options.repo, &run).await?;
    store.optimize().await?;
    report.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        repo = %report.repo,
        commit = %report.commit,
        files = report.files,
        chunks = report.chunks,
        tokens = report.tokens,
        secrets_redacted = report.secrets.values().sum::<usize>(),
        secrets = ?report.secrets,
        took_s = report.seconds,
        "indexed"
    );
    Ok(report)
}

/// What [`write_files`] wrote.
#[derive(Debug, Default)]
pub struct Written {
    /// Points written.
    pub chunks: usize,
    /// Model tokens embedded (cache hits cost none).
    pub tokens: usize,
    /// Chunks whose vectors the model computed.
    pub embedded: usize,
    /// Chunks whose vectors came from the embedding cache, from the point
    /// already stored for the same chunk, or from an identical chunk
    /// earlier in the same group.
    pub reused: usize,
    pub secrets: SecretCounts,
}

/// One file for [`write_files`]: its text, or why it is not indexed (it
/// counts as done for progress, and yields no points).
pub type FileRead = std::result::Result<SourceFile, SkipReason>;

/// Chunks, embeds and writes `files` as points of run `run` at `commit`;
/// returns once the store acknowledged every point (it neither deletes nor
/// flushes). With a `cache`, vectors of text embedded before are reused and
/// new ones are added to it.
///
/// `files` is pulled one file at a time by the chunking thread, no faster
/// than the model and the store take the chunks (see the module docs), so
/// an iterator that reads files as it goes keeps memory bounded by a few
/// groups, not by the number of files. `files_total` is what progress
/// reports as the number of files to do.
#[allow(clippy::too_many_arguments)]
pub async fn write_files<I>(
    files: I,
    files_total: usize,
    commit: &str,
    run: &str,
    options: &IndexOptions,
    chunker: Arc<Chunker>,
    embedder: Arc<dyn Embed>,
    store: Arc<dyn VectorStore>,
    cache: Option<Arc<EmbeddingCache>>,
    progress: &dyn Progress,
) -> Result<Written>
where
    I: IntoIterator<Item = FileRead>,
    I::IntoIter: Send + 'static,
{
    let files = files.into_iter();
    let mut written = Written::default();
    let scanner = match options.redact_secrets {
        true => Some(secrets::Scanner::with_optional_rules_file(
            options.secret_rules_file.as_deref(),
        )?),
        false => None,
    };
    progress.start(files_total);

    let (group_tx, group_rx) = crossbeam_channel::bounded::<Group>(4);
    let (point_tx, mut point_rx) = tokio::sync::mpsc::channel::<Result<Embedded>>(2);

    // Stage 1: chunking.
    let fingerprint = embedder.fingerprint().to_string();
    let chunk_fingerprint = fingerprint.clone();
    let repo = options.repo.clone();
    let group_size = options.group_size.max(1);
    let commit = commit.to_string();
    let chunk_thread = std::thread::Builder::new()
        .name("cairn-chunk".into())
        .spawn(move || {
            let mut counts = SecretCounts::new();
            let mut group = Group::default();
            for file in files {
                let file = match file {
                    Ok(file) => file,
                    Err(_) => {
                        group.files += 1;
                        continue;
                    }
                };
                // Redact first: nothing downstream may see a secret value.
                let text = match &scanner {
                    Some(scanner) => {
                        let redaction = scanner.redact_file(&file.path, &file.text);
                        for f in &redaction.findings {
                            // Rule, path and line only: never the value.
                            tracing::debug!(repo = %repo, path = %file.path, line = f.line, rule = f.rule, "redacted a secret");
                            *counts.entry(f.rule.to_string()).or_default() += 1;
                        }
                        redaction.text
                    }
                    None => std::borrow::Cow::Borrowed(file.text.as_str()),
                };
                // chunks of one file with the same line range, so far
                let mut parts: std::collections::HashMap<(u32, u32), u32> = std::collections::HashMap::new();
                for c in chunker.chunk(&file.path, &text) {
                    let part = parts.entry((c.start_line, c.end_line)).or_insert(0);
                    let id = point_id_of_part(
                        &repo,
                        &file.path,
                        &file.blob,
                        c.start_line,
                        c.end_line,
                        &chunk_fingerprint,
                        *part,
                    );
                    *part += 1;
                    group.chunks.push(Prepared {
                        id,
                        payload: ChunkPayload {
                            repo: repo.clone(),
                            path: file.path.clone(),
                            language: c.language.as_str().to_string(),
                            kind: c.kind,
                            symbol: c.symbol,
                            start_line: c.start_line,
                            end_line: c.end_line,
                            commit: commit.clone(),
                            blob: file.blob.clone(),
                            content: c.content,
                        },
                        embed_text: c.embed_text,
                    });
                }
                group.files += 1;
                if group.chunks.len() >= group_size && group_tx.send(std::mem::take(&mut group)).is_err() {
                    return counts;
                }
            }
            if group.files > 0 {
                let _ = group_tx.send(group);
            }
            counts
        })
        .map_err(|e| IndexError::io("failed to start the chunking thread", e))?;

    // Stage 2: embedding (the cache first, then the points already stored).
    let run_id = run.to_string();
    let runtime = tokio::runtime::Handle::current();
    let stored = store.clone();
    let embed_thread = std::thread::Builder::new()
        .name("cairn-embed".into())
        .spawn(move || {
            let lookup = |ids: &[String]| runtime.block_on(stored.get(ids));
            for Group {
                chunks: mut group,
                files: files_done,
            } in group_rx
            {
                group.sort_by_key(|p| p.embed_text.len());
                let sources = Sources {
                    fingerprint: &fingerprint,
                    cache: cache.as_deref(),
                    stored: &lookup,
                };
                let msg = embed_group(&group, embedder.as_ref(), &sources).map(|e| {
                    let points: Vec<ChunkPoint> = group
                        .into_iter()
                        .zip(e.vectors)
                        .map(|(p, dense)| ChunkPoint {
                            id: p.id,
                            run: run_id.clone(),
                            sparse: sparse::document_vector_with_symbol(&p.embed_text, p.payload.symbol.as_deref()),
                            payload: p.payload,
                            dense,
                        })
                        .collect();
                    Embedded {
                        points,
                        files: files_done,
                        tokens: e.tokens,
                        embedded: e.embedded,
                    }
                });
                let failed = msg.is_err();
                if point_tx.blocking_send(msg).is_err() || failed {
                    return;
                }
            }
        })
        .map_err(|e| IndexError::io("failed to start the embedding thread", e))?;

    // Stage 3: writing, here on the runtime; the store acknowledges each group.
    let mut files_done = 0;
    let mut outcome = Ok(());
    while let Some(msg) = point_rx.recv().await {
        match msg {
            Ok(e) => {
                let n = e.points.len();
                if let Err(err) = store.upsert(e.points).await {
                    outcome = Err(err);
                    break;
                }
                files_done += e.files;
                written.chunks += n;
                written.tokens += e.tokens;
                written.embedded += e.embedded;
                written.reused += n - e.embedded;
                progress.advance(files_done, written.chunks);
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    drop(point_rx);
    // A stage that panicked closed its channels as if it were done: only
    // joining it tells a panic from the end of the files.
    let chunked = chunk_thread.join();
    let embedded = embed_thread.join();
    if let Err(panic) = embedded {
        let message = panic_message(panic.as_ref());
        tracing::error!(error = %message, "the embedding thread panicked");
        return Err(IndexError::Internal(format!(
            "the embedding thread panicked: {message}"
        )));
    }
    let counts = match chunked {
        Ok(counts) => counts,
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            tracing::error!(error = %message, "the chunking thread panicked");
            return Err(IndexError::Internal(format!("the chunking thread panicked: {message}")));
        }
    };
    outcome?;
    written.secrets = counts;
    Ok(written)
}

/// The message a panic was raised with (`panic!("...")`), if it is text.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => s.to_string(),
        (_, Some(s)) => s.clone(),
        _ => "a panic without a message".to_string(),
    }
}

/// Points of one group, ready to write.
struct Embedded {
    points: Vec<ChunkPoint>,
    files: usize,
    tokens: usize,
    embedded: usize,
}

struct GroupVectors {
    vectors: Vec<Vec<f32>>,
    tokens: usize,
    embedded: usize,
}

/// Where [`embed_group`] looks for vectors before it embeds.
struct Sources<'a> {
    fingerprint: &'a str,
    cache: Option<&'a EmbeddingCache>,
    /// The stored points among some ids ([`VectorStore::get`]).
    stored: &'a dyn Fn(&[String]) -> Result<Vec<ChunkPoint>>,
}

/// Whether a stored point's vector is the one `prepared` would get: same
/// id (so the same repo, path, blob, lines, model and chunker) and the same
/// chunk, which settles what the id leaves out (whether secrets were
/// redacted, say). The commit may differ: unchanged chunks keep their vectors.
fn same_chunk(stored: &ChunkPayload, prepared: &ChunkPayload) -> bool {
    stored.content == prepared.content
        && stored.symbol == prepared.symbol
        && stored.kind == prepared.kind
        && stored.language == prepared.language
        && (&stored.repo, &stored.path, &stored.blob) == (&prepared.repo, &prepared.path, &prepared.blob)
        && (stored.start_line, stored.end_line) == (prepared.start_line, prepared.end_line)
}

/// Vectors for a group, in order: cached ones
/// are read, then those of points already stored with the same chunk, and
/// the rest embedded once per distinct text; everything not cached before is
/// added to the cache.
fn embed_group(group: &[Prepared], embedder: &dyn Embed, sources: &Sources) -> Result<GroupVectors> {
    let cache = sources.cache;
    let humanized: Vec<String> = group.iter().map(|p| sparse::humanize(&p.embed_text)).collect();
    let keys: Vec<Key> = humanized.iter().map(|t| cache_key(sources.fingerprint, t)).collect();
    let mut vectors: Vec<Option<Vec<f32>>> = keys
        .iter()
        .map(|k| cache.and_then(|c| c.get(k)).filter(|v| v.len() == embedder.dim()))
        .collect();
    let missing: Vec<String> = (0..group.len())
        .filter(|&i| vectors[i].is_none())
        .map(|i| group[i].id.clone())
        .collect();
    if !missing.is_empty() {
        match (sources.stored)(&missing) {
            Ok(points) => {
                let by_id: std::collections::HashMap<&str, &ChunkPoint> =
                    points.iter().map(|p| (p.id.as_str(), p)).collect();
                let mut found: Vec<(Key, &[f32])> = Vec::new();
                for (i, v) in vectors.iter_mut().enumerate() {
                    if let (None, Some(p)) = (&v, by_id.get(group[i].id.as_str()))
                        && p.dense.len() == embedder.dim()
                        && same_chunk(&p.payload, &group[i].payload)
                    {
                        *v = Some(p.dense.clone());
                        found.push((keys[i], p.dense.as_slice()));
                    }
                }
                if let (Some(cache), false) = (cache, found.is_empty())
                    && let Err(e) = cache.put_all(&found)
                {
                    tracing::warn!(error = %e, "failed to extend the embedding cache");
                }
            }
            // Only work is lost: the write that follows reports a store that is down.
            Err(e) => tracing::warn!(error = %e, "cannot read stored vectors; embedding instead"),
        }
    }
    // Distinct texts still missing, in group order (which is sorted by length).
    let mut todo: Vec<usize> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (i, v) in vectors.iter().enumerate() {
        if v.is_none() && !seen.contains_key(&keys[i]) {
            seen.insert(keys[i], todo.len());
            todo.push(i);
        }
    }
    let mut tokens = 0;
    if !todo.is_empty() {
        let texts: Vec<&str> = todo.iter().map(|&i| humanized[i].as_str()).collect();
        let out = embedder.embed_documents(&texts)?;
        if out.vectors.len() != todo.len() {
            return Err(IndexError::Embed(format!(
                "the model returned {} vectors for {} texts",
                out.vectors.len(),
                todo.len()
            )));
        }
        tokens = out.tokens;
        if let Some(cache) = cache {
            let entries: Vec<(Key, &[f32])> = todo
                .iter()
                .zip(&out.vectors)
                .map(|(&i, v)| (keys[i], v.as_slice()))
                .collect();
            // The cache only saves work: failing to extend it fails nothing.
            if let Err(e) = cache.put_all(&entries) {
                tracing::warn!(error = %e, "failed to extend the embedding cache");
            }
        }
        for (i, v) in vectors.iter_mut().enumerate() {
            if v.is_none() {
                *v = Some(out.vectors[seen[&keys[i]]].clone());
            }
        }
    }
    Ok(GroupVectors {
        vectors: vectors.into_iter().map(Option::unwrap_or_default).collect(),
        tokens,
        embedded: todo.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_ids_are_deterministic_and_distinct() {
        let a = point_id("r", "a.rs", "b1", 1, 10, "m");
        assert_eq!(a, point_id("r", "a.rs", "b1", 1, 10, "m"));
        assert_ne!(a, point_id("r", "a.rs", "b1", 1, 11, "m"));
        assert_ne!(a, point_id("r", "a.rs", "b1", 1, 10, "other-model"));
        // the first part of a range keeps the id; later parts get their own
        assert_eq!(point_id_of_part("r", "a.rs", "b1", 1, 10, "m", 0), a);
        let second = point_id_of_part("r", "a.rs", "b1", 1, 10, "m", 1);
        assert!(second != a && second != point_id_of_part("r", "a.rs", "b1", 1, 10, "m", 2));
        assert!(a.parse::<uuid::Uuid>().is_ok());
    }
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::embed::{Embedded as Vectors, HashEmbedder};
    use crate::store::edge::EdgeStore;

    /// Files done so far, as the pipeline reports them once stored.
    #[derive(Default)]
    struct Done(AtomicUsize);
    impl Progress for Done {
        fn advance(&self, files_done: usize, _chunks_done: usize) {
            self.0.store(files_done, Ordering::SeqCst);
        }
    }

    fn file(i: usize) -> SourceFile {
        SourceFile {
            path: format!("f{i}.rs"),
            blob: format!("b{i}"),
            text: format!("fn item_{i}() -> usize {{ {i} }}\n"),
        }
    }

    async fn write(
        files: impl Iterator<Item = FileRead> + Send + 'static,
        total: usize,
        embedder: Arc<dyn Embed>,
        progress: &dyn Progress,
    ) -> Result<Written> {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn VectorStore> = Arc::new(EdgeStore::open(dir.path(), embedder.dim()).unwrap());
        let mut options = IndexOptions::new("r");
        options.group_size = 2;
        let chunker = Arc::new(Chunker::new(Default::default()));
        write_files(
            files, total, "c", "run", &options, chunker, embedder, store, None, progress,
        )
        .await
    }

    /// The pipeline pulls files as it goes: however many there are, the
    /// files taken but not yet stored stay within what the channels hold
    /// (about eight groups of `group_size`), never the whole repository.
    #[tokio::test(flavor = "multi_thread")]
    async fn files_stream_through_the_pipeline() {
        const N: usize = 500;
        let done = Arc::new(Done::default());
        let (most, d) = (Arc::new(AtomicUsize::new(0)), done.clone());
        let m = most.clone();
        let files = (0..N).map(move |i| {
            // files taken before this one, minus those already stored
            m.fetch_max(i - d.0.load(Ordering::SeqCst), Ordering::SeqCst);
            if i % 50 == 7 {
                Err(SkipReason::Binary)
            } else {
                Ok(file(i))
            }
        });
        let written = write(files, N, Arc::new(HashEmbedder::new(8)), done.as_ref())
            .await
            .unwrap();
        assert_eq!(written.chunks, N - N / 50);
        assert_eq!(done.0.load(Ordering::SeqCst), N, "skipped files count as done");
        let most = most.load(Ordering::SeqCst);
        assert!(most <= 32, "{most} files were in memory at once");
    }

    /// Embeds like [`HashEmbedder`] until the `n`-th call, which panics.
    struct PanicsAt(HashEmbedder, usize, AtomicUsize);
    impl Embed for PanicsAt {
        fn dim(&self) -> usize {
            self.0.dim()
        }
        fn fingerprint(&self) -> &str {
            self.0.fingerprint()
        }
        fn embed_documents(&self, texts: &[&str]) -> Result<Vectors> {
            if self.2.fetch_add(1, Ordering::SeqCst) + 1 == self.1 {
                panic!("injected embedder panic");
            }
            self.0.embed_documents(texts)
        }
        fn embed_query(&self, text: &str) -> Result<Vec<f32>> {
            self.0.embed_query(text)
        }
    }

    /// A panic in the embedding or the chunking thread fails the write
    /// (before, a panicking embedder ended the run early and "successfully").
    #[tokio::test(flavor = "multi_thread")]
    async fn a_panic_in_a_stage_fails_the_write() {
        let embedder = Arc::new(PanicsAt(HashEmbedder::new(8), 3, AtomicUsize::new(0)));
        let e = write((0..40).map(|i| Ok(file(i))), 40, embedder, &NoProgress)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Internal);
        assert!(
            e.to_string()
                .contains("embedding thread panicked: injected embedder panic"),
            "{e}"
        );

        let files = (0..40).map(|i| {
            if i == 9 {
                panic!("injected reader panic")
            } else {
                Ok(file(i))
            }
        });
        let e = write(files, 40, Arc::new(HashEmbedder::new(8)), &NoProgress)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("chunking thread panicked: injected reader panic"),
            "{e}"
        );
    }
}
