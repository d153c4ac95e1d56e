//! `cairn store copy | snapshot | restore`: moving an index between backends
//! without re-embedding, and backing up an embedded data dir.
//!
//! - **copy** pages every point (vectors, payload and run id) out of one
//!   store and upserts it into another, so a team can move from the embedded
//!   store to a Qdrant server (or back) without re-embedding. The target's
//!   collection is created if missing and must match the model's dimension.
//! - **snapshot** copies what an embedded data dir cannot rebuild — the
//!   vector store, the repo registry, the token store and the audit signing
//!   keys — into a new directory with a `manifest.json` of blake3 hashes. It
//!   takes the data dir's lock, so it runs while no `cairn serve` holds it.
//!   Git mirrors and caches are not included: the indexer rebuilds them.
//! - **restore** checks every hash in the manifest before writing anything,
//!   then copies the files into an empty data dir (or replaces an existing
//!   one's with `--force`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail, ensure};
use cairn_indexer::datadir::DataDir;
use cairn_indexer::store::VectorStore;
use cairn_indexer::store::edge::EdgeStore;
use cairn_indexer::store::qdrant::QdrantStore;
use serde::{Deserialize, Serialize};

use cairn_config::Config;

/// Points per page when copying.
const PAGE: usize = 256;

/// One side of a copy: `edge:DIR` (an embedded data dir) or `qdrant:URL`
/// (the `[store]` settings with this URL; `#collection` overrides the
/// collection name).
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    Edge(PathBuf),
    Qdrant { url: String, collection: Option<String> },
}

impl std::str::FromStr for Endpoint {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        if let Some(dir) = s.strip_prefix("edge:") {
            ensure!(
                !dir.is_empty(),
                "edge: needs a data directory, like edge:/var/lib/cairn"
            );
            return Ok(Endpoint::Edge(PathBuf::from(dir)));
        }
        if let Some(rest) = s.strip_prefix("qdrant:") {
            let (url, collection) = match rest.split_once('#') {
                Some((u, c)) => (u, Some(c.to_string())),
                None => (rest, None),
            };
            ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "qdrant: needs the gRPC URL, like qdrant:http://qdrant:6334 (optionally #collection)"
            );
            return Ok(Endpoint::Qdrant {
                url: url.to_string(),
                collection,
            });
        }
        bail!("{s:?}: use edge:DATA_DIR or qdrant:URL[#collection]")
    }
}

/// An opened endpoint; an embedded store keeps its data dir locked.
struct Opened {
    store: Arc<dyn VectorStore>,
    _lock: Option<DataDir>,
}

async fn open(endpoint: &Endpoint, config: &Config, dim: usize, holder: &str) -> anyhow::Result<Opened> {
    Ok(match endpoint {
        Endpoint::Edge(dir) => {
            let data = DataDir::open(dir, holder)?;
            let store = EdgeStore::open(&data.edge_store(), dim)?;
            Opened {
                store: Arc::new(store),
                _lock: Some(data),
            }
        }
        Endpoint::Qdrant { url, collection } => {
            let mut settings = config.store.qdrant_settings();
            settings.url = url.clone();
            if let Some(c) = collection {
                settings.collection = c.clone();
            }
            Opened {
                store: Arc::new(QdrantStore::connect(settings, dim).await?),
                _lock: None,
            }
        }
    })
}

/// What a copy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyReport {
    pub points: usize,
}

/// Copies every point from `from` to `to` (vectors of dimension `dim`).
/// Point ids are deterministic, so a copy that is interrupted and run again
/// converges; points already in the target that the source lacks are kept.
pub async fn copy(from: &Endpoint, to: &Endpoint, config: &Config, dim: usize) -> anyhow::Result<CopyReport> {
    ensure!(from != to, "the source and the target are the same store");
    let source = open(from, config, dim, "cairn store copy (source)").await?;
    let target = open(to, config, dim, "cairn store copy (target)").await?;
    let expected = source.store.count(&Default::default()).await?;
    let mut offset = None;
    let mut points = 0;
    loop {
        let (page, next) = source.store.export(offset.clone(), PAGE).await?;
        if let Some(p) = page.iter().find(|p| p.dense.len() != dim) {
            bail!(
                "point {} has a {}-dimensional vector; the configured model makes {dim}",
                p.id,
                p.dense.len()
            );
        }
        points += page.len();
        target.store.upsert(page).await?;
        tracing::info!(copied = points, of = expected, "copying points");
        match next {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    target.store.flush().await?;
    Ok(CopyReport { points })
}

/// `manifest.json` of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Format version of the snapshot.
    pub version: u32,
    pub created_at: String,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestFile {
    /// Path relative to the data dir, `/`-separated.
    pub path: String,
    pub bytes: u64,
    pub blake3: String,
}

const MANIFEST: &str = "manifest.json";
const SNAPSHOT_VERSION: u32 = 1;

/// What a snapshot holds, relative to the data dir: directories are taken
/// whole, missing entries are skipped.
const SNAPSHOT_ENTRIES: &[&str] = &[
    "store/generation.json",
    "repos.json",
    "tokens.json",
    "audit/signing-key.pk8",
    "audit/signing-key.pub",
];

fn hash_file(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let bytes = std::io::copy(&mut file, &mut hasher).with_context(|| format!("failed to read {}", path.display()))?;
    Ok((bytes, hasher.finalize().to_hex().to_string()))
}

fn files_under(root: &Path, rel: &str, out: &mut Vec<String>) -> anyhow::Result<()> {
    let path = root.join(rel);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    };
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(&path)
            .with_context(|| format!("failed to list {}", path.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = e.file_name();
            let name = name
                .to_str()
                .with_context(|| format!("non-UTF-8 file name in {}", path.display()))?;
            files_under(root, &format!("{rel}/{name}"), out)?;
        }
    } else if meta.is_file() {
        out.push(rel.to_string());
    }
    Ok(())
}

/// Copies the embedded store, registry, tokens and audit keys of the locked
/// data dir `data` into `out`, which must not exist yet.
pub fn snapshot(data: &DataDir, out: &Path) -> anyhow::Result<Manifest> {
    ensure!(
        !out.exists(),
        "{} already exists; a snapshot goes into a new directory",
        out.display()
    );
    let root = data.root();
    let mut rels = Vec::new();
    // the serving generation's shard (see cairn_indexer::generation)
    let shard = data
        .edge_store()
        .strip_prefix(root)
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_else(|_| "store/edge".to_string());
    files_under(root, &shard, &mut rels)?;
    for entry in SNAPSHOT_ENTRIES {
        files_under(root, entry, &mut rels)?;
    }
    ensure!(
        rels.iter().any(|r| r.starts_with(&format!("{shard}/"))),
        "{} holds no embedded store to snapshot",
        root.display()
    );
    let partial = out.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial).with_context(|| format!("failed to remove {}", partial.display()))?;
    }
    let mut files = Vec::with_capacity(rels.len());
    for rel in rels {
        let src = root.join(&rel);
        let dst = partial.join(&rel);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
        }
        std::fs::copy(&src, &dst).with_context(|| format!("failed to copy {}", src.display()))?;
        let (bytes, blake3) = hash_file(&dst)?;
        files.push(ManifestFile {
            path: rel,
            bytes,
            blake3,
        });
    }
    let manifest = Manifest {
        version: SNAPSHOT_VERSION,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        files,
    };
    std::fs::write(partial.join(MANIFEST), serde_json::to_vec_pretty(&manifest)?)?;
    // the snapshot appears whole or not at all
    std::fs::rename(&partial, out).with_context(|| format!("failed to move the snapshot to {}", out.display()))?;
    Ok(manifest)
}

/// Checks `snapshot` against its manifest, then copies it into the locked
/// data dir `data`. Without `force` the data dir must hold no store, tokens
/// or registry yet; with it, those are replaced.
pub fn restore(snapshot: &Path, data: &DataDir, force: bool) -> anyhow::Result<Manifest> {
    let raw = std::fs::read(snapshot.join(MANIFEST))
        .with_context(|| format!("{} is not a cairn snapshot (no {MANIFEST})", snapshot.display()))?;
    let manifest: Manifest =
        serde_json::from_slice(&raw).with_context(|| format!("malformed {}", snapshot.join(MANIFEST).display()))?;
    ensure!(
        manifest.version == SNAPSHOT_VERSION,
        "snapshot format {} is not supported (this cairn reads {SNAPSHOT_VERSION})",
        manifest.version
    );
    for f in &manifest.files {
        let rel = cairn_indexer::source::checked_relative_path(&f.path)
            .map_err(|e| anyhow::anyhow!("manifest names an unsafe path {:?}: {e}", f.path))?;
        let (bytes, hash) = hash_file(&snapshot.join(rel))?;
        ensure!(
            bytes == f.bytes && hash == f.blake3,
            "{} does not match the manifest (damaged or modified snapshot); nothing was restored",
            f.path
        );
    }
    let root = data.root();
    let existing: Vec<&str> = SNAPSHOT_ENTRIES
        .iter()
        .copied()
        .filter(|e| root.join(e).exists())
        .collect();
    if !existing.is_empty() {
        ensure!(
            force,
            "{} already holds {}; restore into an empty data dir or pass --force to replace them",
            root.display(),
            existing.join(", ")
        );
        for e in existing {
            let p = root.join(e);
            if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            }
            .with_context(|| format!("failed to remove {}", p.display()))?;
        }
    }
    for f in &manifest.files {
        let dst = root.join(&f.path);
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
        }
        std::fs::copy(snapshot.join(&f.path), &dst).with_context(|| format!("failed to write {}", dst.display()))?;
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            "edge:/var/lib/cairn".parse::<Endpoint>().unwrap(),
            Endpoint::Edge("/var/lib/cairn".into())
        );
        assert_eq!(
            "qdrant:http://q:6334#chunks".parse::<Endpoint>().unwrap(),
            Endpoint::Qdrant {
                url: "http://q:6334".into(),
                collection: Some("chunks".into())
            }
        );
        for bad in ["edge:", "qdrant:q:6334", "s3://bucket", ""] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    async fn all_points(store: &dyn VectorStore) -> Vec<(String, String, String, Vec<u32>)> {
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let (page, next) = store.export(offset, 7).await.unwrap();
            out.extend(page.into_iter().map(|p| {
                (
                    p.id,
                    p.run,
                    serde_json::to_string(&p.payload).unwrap(),
                    p.sparse.indices,
                )
            }));
            match next {
                Some(n) => offset = Some(n),
                None => break,
            }
        }
        out.sort();
        out
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn copy_moves_every_point_without_re_embedding() {
        use cairn_indexer::embed::{Embed, HashEmbedder};
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        for i in 0..30 {
            std::fs::write(
                repo.join(format!("m{i}.rs")),
                format!("/// Adds {i}.\npub fn add_{i}(x: u32) -> u32 {{\n    x + {i}\n}}\n"),
            )
            .unwrap();
        }
        let embedder: Arc<dyn Embed> = Arc::new(HashEmbedder::new(16));
        let config = Config {
            data_dir: tmp.path().join("a"),
            ..Default::default()
        };
        {
            let data = DataDir::open(&config.data_dir, "test").unwrap();
            let engine = crate::engine::Engine::with_embedder(&config, data, embedder.clone()).unwrap();
            engine
                .index(&repo, "demo", &config, &cairn_indexer::pipeline::NoProgress)
                .await
                .unwrap();
        }
        let from = Endpoint::Edge(config.data_dir.clone());
        let to = Endpoint::Edge(tmp.path().join("b"));
        let report = copy(&from, &to, &config, 16).await.unwrap();
        assert!(report.points >= 30, "{report:?}");
        assert!(copy(&from, &from, &config, 16).await.is_err());
        assert!(
            copy(&from, &Endpoint::Edge(tmp.path().join("c")), &config, 32)
                .await
                .is_err()
        );

        let a = EdgeStore::open(&config.data_dir.join("store/edge"), 16).unwrap();
        let b = EdgeStore::open(&tmp.path().join("b/store/edge"), 16).unwrap();
        let (pa, pb) = (all_points(&a).await, all_points(&b).await);
        assert_eq!(pa.len(), report.points);
        assert_eq!(pa, pb);
        // the copy answers a search like the original (same scores; equal
        // scores may come in either order)
        let q = embedder.embed_query("add 7").unwrap();
        let filter = Default::default();
        let scores =
            |hits: Vec<cairn_indexer::store::ScoredChunk>| -> Vec<f32> { hits.into_iter().map(|h| h.score).collect() };
        let sa = scores(a.search_dense(q.clone(), &filter, 5).await.unwrap());
        let sb = scores(b.search_dense(q, &filter, 5).await.unwrap());
        assert_eq!(sa.len(), 5);
        assert!(
            sa.iter().zip(&sb).all(|(x, y)| (x - y).abs() < 1e-5),
            "{sa:?} vs {sb:?}"
        );
    }

    #[test]
    fn snapshot_restores_byte_for_byte_and_detects_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("store/edge/segments")).unwrap();
        std::fs::write(src.join("store/edge/edge_config.json"), "{}").unwrap();
        std::fs::write(src.join("store/edge/segments/a.bin"), vec![7u8; 5000]).unwrap();
        std::fs::write(src.join("repos.json"), "{\"r\":1}").unwrap();
        std::fs::write(src.join("tokens.json"), "[]").unwrap();
        std::fs::create_dir_all(src.join("mirrors/x.git")).unwrap();
        std::fs::write(src.join("mirrors/x.git/HEAD"), "ref").unwrap();
        let out = tmp.path().join("snap");
        {
            let data = DataDir::open(&src, "test").unwrap();
            let m = snapshot(&data, &out).unwrap();
            assert_eq!(m.files.len(), 4, "{m:?}");
            assert!(snapshot(&data, &out).is_err(), "an existing target is refused");
        }
        assert!(!out.join("mirrors").exists(), "mirrors are rebuilt, not snapshotted");

        let dst = tmp.path().join("dst");
        let data = DataDir::open(&dst, "test").unwrap();
        restore(&out, &data, false).unwrap();
        for f in ["store/edge/segments/a.bin", "repos.json", "tokens.json"] {
            assert_eq!(
                std::fs::read(src.join(f)).unwrap(),
                std::fs::read(dst.join(f)).unwrap(),
                "{f}"
            );
        }
        let err = restore(&out, &data, false).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");

        std::fs::write(out.join("repos.json"), "{\"r\":2}").unwrap();
        let err = restore(&out, &data, true).unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
        assert_eq!(std::fs::read_to_string(dst.join("repos.json")).unwrap(), "{\"r\":1}");
    }
}
