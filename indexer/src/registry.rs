//! The registry of indexed repositories: `<data dir>/repos.json`, rewritten
//! atomically (temp file + rename) after each completed run.
//!
//! Every change is a read-modify-write under an exclusive lock on
//! `repos.json.lock` (an OS file lock, so it orders threads of one process
//! and other processes alike): two runs finishing at once, or a run and a
//! `groups` change, never lose each other's update.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};
use crate::secrets::SecretCounts;
use crate::source::SkipCounts;

/// One indexed repository.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RepoRecord {
    pub name: String,
    /// Where it was indexed from.
    pub source: String,
    pub indexed_commit: String,
    pub files: usize,
    pub chunks: usize,
    pub skipped: SkipCounts,
    /// Secrets redacted in the last run, by rule id.
    #[serde(default)]
    pub secrets_redacted: SecretCounts,
    /// Whether the last run redacted secrets (`index.redact_secrets`).
    /// Records written before redaction existed read as `false`.
    #[serde(default)]
    pub redact_secrets: bool,
    /// RFC 3339 time of the last completed run.
    pub last_indexed_at: String,
    /// Embedding model fingerprint the points were built with.
    pub embedder: String,
    /// Groups whose members may read it (besides `admin`); none: admins only.
    #[serde(default)]
    pub groups: Vec<String>,
    /// public | internal | confidential | restricted; empty: not set
    /// (answers treat it as `internal`).
    #[serde(default)]
    pub sensitivity: String,
}

/// Data sensitivity: of a repo (`cairn index --sensitivity`), the most a
/// backend may receive (`max_sensitivity`), and the most a caller may read
/// (a token's or OIDC claim's clearance). An answer goes only to a backend
/// allowed for every piece of its context; a caller reads only repos at or
/// below its clearance.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Default)]
#[serde(rename_all = "lowercase")]
pub enum Sensitivity {
    /// The default: a backend is trusted with nothing until the operator says so.
    #[default]
    Public,
    Internal,
    Confidential,
    Restricted,
}

impl Sensitivity {
    /// What a repo indexed without `--sensitivity` counts as.
    pub const REPO_DEFAULT: Sensitivity = Sensitivity::Internal;

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(Self::Public),
            "internal" => Some(Self::Internal),
            "confidential" => Some(Self::Confidential),
            "restricted" => Some(Self::Restricted),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Internal => "internal",
            Self::Confidential => "confidential",
            Self::Restricted => "restricted",
        }
    }

    /// A repo's sensitivity from its registry record (unset or unknown:
    /// [`Self::REPO_DEFAULT`], or `restricted` for an unknown word, to fail closed).
    pub fn of_repo(record: &str) -> Self {
        if record.is_empty() {
            Self::REPO_DEFAULT
        } else {
            Self::parse(record).unwrap_or(Self::Restricted)
        }
    }
}

/// What identifies one version of `repos.json` on disk: it is replaced by
/// rename, so a new version has a new inode (and usually a new mtime/size).
type Stamp = (Option<std::time::SystemTime>, u64, u64);
type Repos = BTreeMap<String, RepoRecord>;

/// Reads and writes `repos.json`.
///
/// Reads are served from the last parsed version while the file's stamp is
/// unchanged (one `stat` per call), so the search path, which consults the
/// registry several times per request, parses it only after a write. Clones
/// share the cache.
#[derive(Debug, Clone)]
pub struct Registry {
    path: PathBuf,
    cache: Arc<Mutex<Option<(Stamp, Repos)>>>,
}

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let ino = 0;
    (meta.modified().ok(), meta.len(), ino)
}

impl Registry {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            cache: Arc::new(Mutex::new(None)),
        }
    }

    /// The directory of `repos.json`: the run manifests live in its
    /// `state/` (see [`crate::generation`]).
    pub fn dir(&self) -> &std::path::Path {
        self.path.parent().unwrap_or(std::path::Path::new("."))
    }

    /// All repositories by name (empty when the file does not exist yet).
    pub fn load(&self) -> Result<BTreeMap<String, RepoRecord>> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(IndexError::io(format!("failed to read {}", self.path.display()), e)),
        };
        let now = stamp(&meta);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // A version written in the last moments may share its stamp with the
        // next one (a reused inode, the same size, the file system clock's
        // granularity): like git's "racily clean" check, trust the cache only
        // for a file that has been quiet for a while.
        let settled = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(2));
        if let Some((seen, repos)) = cache.as_ref()
            && *seen == now
            && settled
        {
            return Ok(repos.clone());
        }
        let repos: BTreeMap<String, RepoRecord> = match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| IndexError::Store(format!("corrupt registry {}: {e}", self.path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(IndexError::io(format!("failed to read {}", self.path.display()), e)),
        };
        *cache = Some((now, repos.clone()));
        Ok(repos)
    }

    /// Inserts or replaces one record.
    pub fn put(&self, record: RepoRecord) -> Result<()> {
        self.update(&record.name.clone(), |_| Some(record))?;
        Ok(())
    }

    /// Removes one record; returns whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool> {
        Ok(self.update(name, |_| None)?.is_some())
    }

    /// Replaces the record of `name` with what `change` makes of the current
    /// one (`None`: no record / remove it), atomically with respect to every
    /// other change; returns the record as it was before.
    pub fn update(
        &self,
        name: &str,
        change: impl FnOnce(Option<RepoRecord>) -> Option<RepoRecord>,
    ) -> Result<Option<RepoRecord>> {
        let _lock = self.lock()?;
        let mut all = self.load()?;
        let before = all.remove(name);
        let after = change(before.clone());
        if after == before {
            return Ok(before);
        }
        if let Some(record) = after {
            all.insert(name.to_string(), record);
        }
        self.save(&all)?;
        Ok(before)
    }

    /// Replaces every record with `records` (a copy published by another
    /// process), atomically with respect to every other change; returns
    /// whether anything changed.
    pub fn replace_all(&self, records: BTreeMap<String, RepoRecord>) -> Result<bool> {
        let _lock = self.lock()?;
        if self.load()? == records {
            return Ok(false);
        }
        self.save(&records)?;
        Ok(true)
    }

    /// Holds the registry's write lock until dropped.
    fn lock(&self) -> Result<std::fs::File> {
        let path = self.path.with_extension("json.lock");
        let io = |e| IndexError::io(format!("failed to lock {}", path.display()), e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(file)
    }

    fn save(&self, all: &BTreeMap<String, RepoRecord>) -> Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(all).map_err(|e| IndexError::Store(e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| IndexError::io(format!("failed to write {}", self.path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_load_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registry::new(dir.path().join("repos.json"));
        assert!(r.load().unwrap().is_empty());
        let rec = RepoRecord {
            name: "a".into(),
            source: "/x".into(),
            indexed_commit: "c".into(),
            files: 1,
            chunks: 2,
            skipped: Default::default(),
            secrets_redacted: [("github-token".to_string(), 2)].into(),
            redact_secrets: true,
            last_indexed_at: "2026-01-01T00:00:00Z".into(),
            embedder: "m".into(),
            groups: vec!["g".into()],
            sensitivity: "internal".into(),
        };
        r.put(rec.clone()).unwrap();
        assert_eq!(r.load().unwrap()["a"], rec);
        assert!(r.remove("a").unwrap());
        assert!(!r.remove("a").unwrap());
    }

    #[test]
    fn records_written_before_secret_counts_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repos.json");
        std::fs::write(
            &path,
            r#"{"a": {"name": "a", "source": "/x", "indexed_commit": "c", "files": 1, "chunks": 2,
                "skipped": {}, "last_indexed_at": "2026-01-01T00:00:00Z", "embedder": "m"}}"#,
        )
        .unwrap();
        let rec = &Registry::new(path).load().unwrap()["a"];
        assert!(rec.secrets_redacted.is_empty() && !rec.redact_secrets);
    }

    #[test]
    fn concurrent_updates_from_many_handles_are_never_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repos.json");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let r = Registry::new(path.clone());
                std::thread::spawn(move || {
                    for i in 0..25 {
                        // a new record per thread, and a shared counter record
                        r.put(RepoRecord {
                            name: format!("t{t}"),
                            chunks: i,
                            ..RepoRecord::default()
                        })
                        .unwrap();
                        r.update("shared", |old| {
                            let mut rec = old.unwrap_or_default();
                            rec.name = "shared".into();
                            rec.chunks += 1;
                            Some(rec)
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = Registry::new(path).load().unwrap();
        assert_eq!(all["shared"].chunks, 8 * 25, "no increment was lost");
        for t in 0..8 {
            assert_eq!(all[&format!("t{t}")].chunks, 24);
        }
    }

    #[test]
    fn cached_reads_see_writes_from_other_handles() {
        let dir = tempfile::tempdir().unwrap();
        let reader = Registry::new(dir.path().join("repos.json"));
        let writer = Registry::new(dir.path().join("repos.json"));
        let rec = |name: &str, chunks: usize| RepoRecord {
            name: name.into(),
            chunks,
            ..RepoRecord::default()
        };
        writer.put(rec("a", 1)).unwrap();
        assert_eq!(reader.load().unwrap()["a"].chunks, 1);
        // same size, written right away: the rename still gives a new version
        writer.put(rec("a", 2)).unwrap();
        assert_eq!(reader.load().unwrap()["a"].chunks, 2);
        assert!(writer.remove("a").unwrap());
        assert!(reader.load().unwrap().is_empty());
    }
}
