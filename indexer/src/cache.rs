//! The embedding cache: content hash → dense vector, shared by every repo
//! and branch in a data directory, so identical text is embedded once.
//!
//! The key is `blake3(embedder fingerprint, 0, the exact text given to the
//! model)`: everything that determines the vector and nothing else, so a
//! chunk that moves to another file, repo or branch reuses its vector.
//!
//! # On disk
//! One append-only log, `<data dir>/cache/embeddings.v1.log`, of records
//!
//! ```text
//! magic u32 | key [32] | dim u32 | dim × f32 (little endian) | blake3(key, dim, floats)[..16]
//! ```
//!
//! Opening scans the log and indexes the offset of every record whose
//! checksum holds; the first record that is torn or corrupt ends the scan and
//! the file is truncated there (only the tail can be torn: records are only
//! ever appended). Every read checks the record's checksum again, so a
//! damaged record is a miss, never a wrong vector. The log is synced at the
//! end of each run; losing unsynced records costs only re-embedding.
//!
//! The log is never compacted: entries of purged repos stay (they are keyed
//! by content, not by repo). Delete the `cache` directory to reclaim it:
//! chunks already in the store keep their vectors (the indexer reads them
//! back before embedding, see [`crate::store::VectorStore::get`]), so only
//! text that is not stored anywhere is embedded again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::error::{IndexError, Result};

const MAGIC: u32 = 0xCA1E_C0DE;
const HEADER: usize = 4 + 32 + 4;
const CHECKSUM: usize = 16;
/// Dimensions above this are treated as corruption.
const MAX_DIM: usize = 1 << 16;

/// A cache key: see the module docs.
pub type Key = [u8; 32];

/// The key of `text` embedded by the model with `fingerprint`.
pub fn key(fingerprint: &str, text: &str) -> Key {
    let mut h = blake3::Hasher::new();
    h.update(fingerprint.as_bytes());
    h.update(&[0]);
    h.update(text.as_bytes());
    *h.finalize().as_bytes()
}

fn checksum(key: &Key, floats: &[u8]) -> [u8; CHECKSUM] {
    let mut h = blake3::Hasher::new();
    h.update(key);
    h.update(&((floats.len() / 4) as u32).to_le_bytes());
    h.update(floats);
    let mut out = [0; CHECKSUM];
    out.copy_from_slice(&h.finalize().as_bytes()[..CHECKSUM]);
    out
}

struct Inner {
    file: File,
    /// Offset of each valid record.
    index: HashMap<Key, u64>,
    /// End of the last valid record: where the next one goes.
    end: u64,
}

/// The embedding cache of one data directory (see the module docs).
pub struct EmbeddingCache {
    path: PathBuf,
    inner: Mutex<Inner>,
}

/// Caches open in this process, by log path: one writer per log.
static OPEN: Mutex<Option<HashMap<PathBuf, Weak<EmbeddingCache>>>> = Mutex::new(None);

impl EmbeddingCache {
    /// The cache of data directory `root`, shared by every caller in this
    /// process (the data directory's lock keeps other processes out).
    pub fn shared(root: &Path) -> Result<Arc<Self>> {
        let path = root.join("cache").join("embeddings.v1.log");
        let mut open = OPEN.lock();
        let map = open.get_or_insert_with(HashMap::new);
        if let Some(cache) = map.get(&path).and_then(Weak::upgrade) {
            return Ok(cache);
        }
        let cache = Arc::new(Self::open(&path)?);
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(path, Arc::downgrade(&cache));
        Ok(cache)
    }

    /// Opens (creating if needed) the log at `path`, dropping a torn tail.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |e| IndexError::io(format!("failed to open embedding cache {}", path.display()), e);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut reader = std::io::BufReader::new(&file);
        let mut index = HashMap::new();
        let mut at = 0u64;
        let mut header = [0u8; HEADER];
        let mut body = Vec::new();
        while at < len {
            if reader.read_exact(&mut header).is_err() {
                break;
            }
            let magic = u32::from_le_bytes(header[..4].try_into().unwrap_or_default());
            let dim = u32::from_le_bytes(header[36..40].try_into().unwrap_or_default()) as usize;
            if magic != MAGIC || dim == 0 || dim > MAX_DIM {
                break;
            }
            body.resize(dim * 4 + CHECKSUM, 0);
            if reader.read_exact(&mut body).is_err() {
                break;
            }
            let key: Key = header[4..36].try_into().unwrap_or_default();
            if checksum(&key, &body[..dim * 4])[..] != body[dim * 4..] {
                break;
            }
            index.insert(key, at);
            at += (HEADER + body.len()) as u64;
        }
        drop(reader);
        if at < len {
            tracing::warn!(path = %path.display(), kept = at, len, "embedding cache: dropping a torn or corrupt tail");
            file.set_len(at).map_err(io)?;
        }
        file.seek(SeekFrom::Start(at)).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner { file, index, end: at }),
        })
    }

    /// Number of cached vectors.
    pub fn len(&self) -> usize {
        self.inner.lock().index.len()
    }

    /// Whether the cache holds no vector.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vector for `key`, if cached and intact.
    pub fn get(&self, key: &Key) -> Option<Vec<f32>> {
        let inner = self.inner.lock();
        let at = *inner.index.get(key)?;
        let mut header = [0u8; HEADER];
        inner.file.read_exact_at(&mut header, at).ok()?;
        let dim = u32::from_le_bytes(header[36..40].try_into().ok()?) as usize;
        if header[4..36] != key[..] || dim == 0 || dim > MAX_DIM {
            return None;
        }
        let mut body = vec![0u8; dim * 4 + CHECKSUM];
        inner.file.read_exact_at(&mut body, at + HEADER as u64).ok()?;
        if checksum(key, &body[..dim * 4])[..] != body[dim * 4..] {
            tracing::warn!(path = %self.path.display(), offset = at, "embedding cache: corrupt record ignored");
            return None;
        }
        Some(
            body[..dim * 4]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }

    /// Appends vectors (keys already cached are skipped).
    pub fn put_all(&self, entries: &[(Key, &[f32])]) -> Result<()> {
        let mut inner = self.inner.lock();
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for (key, vector) in entries {
            if vector.is_empty() || vector.len() > MAX_DIM || inner.index.contains_key(key) {
                continue;
            }
            offsets.push((*key, inner.end + buf.len() as u64));
            let floats: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
            buf.extend_from_slice(&MAGIC.to_le_bytes());
            buf.extend_from_slice(key);
            buf.extend_from_slice(&(vector.len() as u32).to_le_bytes());
            buf.extend_from_slice(&floats);
            buf.extend_from_slice(&checksum(key, &floats));
        }
        if buf.is_empty() {
            return Ok(());
        }
        let end = inner.end;
        let written = inner.file.write_all_at(&buf, end);
        if let Err(e) = written {
            // Drop whatever part landed so the next append starts clean.
            let _ = inner.file.set_len(end);
            return Err(IndexError::io(
                format!("failed to write embedding cache {}", self.path.display()),
                e,
            ));
        }
        inner.end += buf.len() as u64;
        for (key, at) in offsets {
            inner.index.insert(key, at);
        }
        Ok(())
    }

    /// Makes appended vectors durable.
    pub fn sync(&self) -> Result<()> {
        let inner = self.inner.lock();
        inner
            .file
            .sync_data()
            .map_err(|e| IndexError::io(format!("failed to sync embedding cache {}", self.path.display()), e))
    }
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync of
/// the directory): readers see the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e| IndexError::io(format!("failed to write {}", path.display()), e);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_survive_reopen_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let (a, b) = (key("m", "fn a() {}"), key("m", "fn b() {}"));
        assert_ne!(a, key("other-model", "fn a() {}"));
        {
            let c = EmbeddingCache::open(&path).unwrap();
            c.put_all(&[(a, &[1.0, 2.0][..]), (b, &[3.0, 4.0][..])]).unwrap();
            c.sync().unwrap();
            assert_eq!(c.get(&a), Some(vec![1.0, 2.0]));
        }
        // a torn write: half of the second record
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 5).unwrap();
        let c = EmbeddingCache::open(&path).unwrap();
        assert_eq!(c.get(&a), Some(vec![1.0, 2.0]));
        assert_eq!(c.get(&b), None);
        assert_eq!(c.len(), 1);
        // appends after the truncation are readable after another reopen
        c.put_all(&[(b, &[5.0, 6.0][..])]).unwrap();
        drop(c);
        let c = EmbeddingCache::open(&path).unwrap();
        assert_eq!(c.get(&b), Some(vec![5.0, 6.0]));
    }

    #[test]
    fn a_corrupt_record_is_a_miss_not_a_wrong_vector() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let a = key("m", "x");
        let c = EmbeddingCache::open(&path).unwrap();
        c.put_all(&[(a, &[1.0, 2.0, 3.0][..])]).unwrap();
        // flip one byte of the floats behind the cache's back
        let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        f.write_all_at(&[0x7f], HEADER as u64 + 1).unwrap();
        assert_eq!(c.get(&a), None);
        drop(c);
        assert!(EmbeddingCache::open(&path).unwrap().is_empty());
    }
}
